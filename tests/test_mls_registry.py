"""The MLS registries (condensation/mls): what the command line, the resume check, the ablation check, the run
folder and the record readers derive from the entries; a rule registered inside a test runs and resumes through
the real command line; every rule's state survives a resume."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, run_cli
from fakedata import make_cifar

from condensation import mls
from condensation.mls import MEASURES, RULES, Option, Rule, register_rule
from reg_ipcx import Regularizer
from utils.errors import UserError


class Toy(Rule):
    """A test's rule: counts its selections and walks down from the last subset, ``--toy_step`` subsets a time
    (x = ipc − 1 − (count · step mod (ipc − 1))), so a resume that lost the counter picks other subsets."""
    needs_measure = False
    hparams = (Option("toy_step", 1, int, "subsets the toy rule walks down each window", valid=">= 1"),)

    def __init__(self, ipc, key=0, **hparams):
        super().__init__(ipc, key, **hparams)
        self.count = 0

    def select(self, cur, it, prev):
        x = self.ipc - 1 - (self.count * self.toy_step) % (self.ipc - 1)
        self.count += 1
        return x, None

    def state_dict(self):
        return {"count": self.count}

    def load_state_dict(self, state):
        self.count = int(state["count"])


@pytest.fixture
def toy():
    """The toy rule registered for one test, unregistered after it (the other tests see the real rules)."""
    register_rule("toy", help="a test's rule")(Toy)
    try:
        yield Toy
    finally:
        RULES.unregister("toy")
    assert "toy" not in RULES and "toy_step" not in mls.number_keys()


def parser_action(dest):
    from condense_reg import get_args_parser

    (act,) = [a for a in get_args_parser()._actions if a.dest == dest]
    return act


FLAGS = ["-d", "cifar10", "--device", "cpu", "--width", "0.125", "--niter", "1", "--inner_loop", "1",
         "--n_data", "8", "--batch_real", "4", "--ipc", "4", "-f", "2", "--adaptive_reg", "True",
         "--eval_during", "False", "--deterministic", "True", "--adaptive_period", "1"]


def records(folder, kind):
    with open(os.path.join(folder, "metrics.jsonl")) as f:
        return [r for r in map(json.loads, f) if r["type"] == kind]


def test_a_rule_registered_in_a_test_condenses_and_resumes_through_the_cli(toy, tmp_path):
    root = str(tmp_path / "data")
    make_cifar(root, 10, n_train=200, n_test=10)
    act = parser_action("mls_select")
    assert act.choices == ["change", "distance", "random", "toy"] and "toy = a test's rule" in act.help
    assert parser_action("toy_step").default == 1
    run = ["--data_dir", root, "--mls_select", "toy", "--toy_step", "2"]
    run_cli("condense_reg.py", *FLAGS, *run, "--stop_after", "2", cwd=tmp_path)
    (folder,) = (tmp_path / "raid" / "results" / "cifar10").iterdir()
    assert "_mlstoy_toy_step2_" in folder.name  # the rule's folder tag and its hyper-parameter's
    assert "toy_step: 2\n" in (folder / "args.yaml").read_text()
    # ipc 4, step 2: x = 3 - (2·count mod 3) = 3, 1, 2, 3; nothing measured (needs_measure False)
    assert [(r["it"], r["mls"], r["dbar"], r["delta"]) for r in records(folder, "mls")] == [(1, 3, [], None),
                                                                                            (2, 1, [], None)]
    assert [s["rule_state"] for s in json.loads((folder / "regularizer_2.json").read_text())] == [{"count": 2}] * 10
    # a changed hyper-parameter of the rule is refused on resume (NUMBER_KEYS holds it), the folder untouched
    p = run_cli("condense_reg.py", *FLAGS, *run[:-1], "1", "--save_dir", folder, "--resume", check=False)
    assert p.returncode == 2 and "toy_step: 2 -> 1" in p.stderr
    run_cli("condense_reg.py", *FLAGS, *run, "--save_dir", folder, "--resume", "--stop_after", "4")
    assert [(r["it"], r["mls"]) for r in records(folder, "mls")] == [(1, 3), (2, 1), (3, 2), (4, 3)]
    assert [s["rule_state"] for s in json.loads((folder / "regularizer_4.json").read_text())] == [{"count": 4}] * 10
    # the ablation check: the rule and its hyper-parameter need --adaptive_reg True, the hyper-parameter its rule
    for bad, msg in ((["--mls_select", "toy", "--adaptive_reg", "False"], "--mls_select toy switches a part"),
                     (["--toy_step", "3"], "--toy_step is a hyper-parameter of --mls_select toy")):
        p = run_cli("condense_reg.py", *FLAGS, "--data_dir", root, *bad, "--save_dir", tmp_path / "bad", check=False)
        assert p.returncode == 2 and msg in p.stderr and not (tmp_path / "bad").exists()


# the checkpoint of a stateless rule as it was written before the rules were entries (regularizer_3.json of a
# change run, class 0): it loads and is written again byte for byte
OLD_STATE = ('{"ipc": 4, "adaptive_period": 1, "reg_list": [{"ipcx": 0, "iteration": -1, "regularize": false, '
             '"keep_freeze": false}, {"ipcx": 1, "iteration": 4, "regularize": true, "keep_freeze": true}, '
             '{"ipcx": 2, "iteration": 3, "regularize": false, "keep_freeze": false}, {"ipcx": 3, "iteration": -1, '
             '"regularize": false, "keep_freeze": false}, {"ipcx": 4, "iteration": -1, "regularize": false, '
             '"keep_freeze": false}], "prev_ipcx_list": [1], "prev": [3.930000066757202, 3.190000057220459, '
             '2.890000104904175], "history": [[3.259999990463257, 2.5899999141693115, 2.240000009536743], '
             '[2.890000104904175, 2.190000057220459, 1.8899999856948853], [3.930000066757202, 3.190000057220459, '
             '2.890000104904175]], "last_delta": [1.0399999618530273, 1.0, 1.0000001192092896], '
             '"selections": [[1, 1], [2, 2], [3, 1]]}')


def test_every_rules_state_survives_a_resume(toy):
    """state_dict -> JSON -> load_state_dict, then the same selections as the run that went on (every registered
    rule, the toy's counter included); a stateless rule's state has the keys it had before the registry."""
    ipc, windows = 6, [[1.0 + ((3 * w + x) % 5) * 0.37 for x in range(5)] for w in range(8)]
    for name in RULES:
        a = Regularizer(ipc, 2, select=name, random_key="7:1")
        for w in range(4):
            a.update_status(2 * w)
            a.select_reg_ipc(windows[w] if a.rule.needs_measure else [], it=2 * w + 1)
        b = Regularizer(ipc, 2, select=name, random_key="7:1")
        b.load_state_dict(json.loads(json.dumps(a.state_dict())))
        assert json.dumps(b.state_dict()) == json.dumps(a.state_dict()), name
        for w in range(4, 8):
            for reg in (a, b):
                reg.update_status(2 * w)
                reg.select_reg_ipc(windows[w] if reg.rule.needs_measure else [], it=2 * w + 1)
            assert b.regularized() == a.regularized() and b.get_freeze_ipc() == a.get_freeze_ipc(), name
        assert json.dumps(b.state_dict()) == json.dumps(a.state_dict()) and len(a.selections) == 8, name
        assert ("rule_state" in a.state_dict()) == (name == "toy"), name
    r = Regularizer(4, 1)
    r.load_state_dict(json.loads(OLD_STATE))
    assert json.dumps(r.state_dict()) == OLD_STATE
    register_rule("bad", help="x")(type("Bad", (Rule,), {"select": lambda self, cur, it, prev: (4, None)}))
    try:
        with pytest.raises(ValueError, match="IPC-1..IPC-3"):  # a rule's choice is checked
            Regularizer(4, 1, select="bad").select_reg_ipc([1.0, 2.0, 3.0], it=1)
    finally:
        RULES.unregister("bad")


def test_the_command_line_and_the_checks_derive_from_the_registry(toy):
    from cli.options import NUMBER_KEYS
    from condensation.run_files import condense_tag

    assert parser_action("mls_select").choices == list(RULES) == ["change", "distance", "random", "toy"]
    assert parser_action("mls_metric").choices == list(MEASURES) == ["feature", "gradient", "accuracy"]
    assert (RULES.default, MEASURES.default) == ("change", "feature")
    for reg, dest in ((RULES, "mls_select"), (MEASURES, "mls_metric")):
        assert all(f"{n} = {e.help}" in parser_action(dest).help for n, e in reg.items())
    keys = list(NUMBER_KEYS)
    i = keys.index("mls_select")
    assert keys[i:i + 4] == ["mls_select", "mls_freeze", "mls_metric", "toy_step"] and "toy_step" in NUMBER_KEYS
    assert keys[i - 1] == "dream_random_init" and keys[i + 4] == "exact"

    class A:  # the MLS part of an MDC run's folder name, and the ablation check
        adaptive_reg, mls_select, mls_freeze, mls_metric, toy_step = True, "change", True, "feature", 1
    a = A()
    assert mls.folder_tag(a) == ""
    for select, freeze, metric, step, tag in (("distance", True, "feature", 1, "_mlsdistance"),
                                              ("random", False, "gradient", 1, "_mlsrandom_nofreeze_mlsgradient"),
                                              ("change", True, "accuracy", 1, "_mlsaccuracy"),
                                              ("toy", True, "feature", 3, "_mlstoy_toy_step3")):
        a.mls_select, a.mls_freeze, a.mls_metric, a.toy_step = select, freeze, metric, step
        assert mls.folder_tag(a) == tag
        mls.check_switches(a)
    from cli.arguments import parse_args
    from condense_reg import get_args_parser
    args = parse_args(get_args_parser(), ["--ipc", "4", "--adaptive_reg", "True", "--mls_select", "toy",
                                          "--mls_freeze", "False"])
    assert "_grad_mlstoy_nofreeze_mse_" in condense_tag(args, 0.005)
    a.adaptive_reg, a.mls_freeze = False, False
    with pytest.raises(UserError, match="--mls_select toy, --mls_freeze False, --toy_step 3 switches"):
        mls.check_switches(a)
    # the measures: where they are taken, whether they shard, whether the rule reads one
    assert [(m.per_step, bool(m.one_rank)) for m in MEASURES.values()] == [(True, False), (True, False),
                                                                           (False, True)]
    a.mls_select, a.mls_metric = "random", "gradient"
    assert mls.measure_of(a) is None
    a.mls_select = "distance"
    assert mls.measure_of(a) is MEASURES["gradient"]


def test_the_mls_record_is_written_and_read_in_one_place():
    rec = mls.mls_record(3, [2, 2], [[1.0, 2.0], [1.0, 2.0]], [[0.5, 0.25], [0.5, 0.25]], class_wise=False)
    assert list(rec) == ["type", "it", "dbar", "delta", "mls"] and rec["mls"] == 2 and rec["dbar"] == [1.0, 2.0]
    r = mls.read_mls_record(rec)
    assert (r.it, r.class_wise, r.mls, r.dbar, r.delta) == (3, False, [2], [[1.0, 2.0]], [[0.5, 0.25]])
    assert mls.groups(r, [4, 7]) == [("all", 2, [1.0, 2.0], [0.5, 0.25])]
    wise = mls.read_mls_record(mls.mls_record(1, [1, 3], [[], []], [None, None], class_wise=True))
    assert mls.groups(wise, [4, 7]) == [("class_4", 1, [], None), ("class_7", 3, [], None)]
    assert mls.read_mls_record({"type": "mls", "it": 5, "mls": 1}).dbar == [None]  # a hand-written record
    assert mls.read_frozen({"frozen": [1, -1]}) == (True, [1, -1]) and mls.read_frozen({"frozen": 2}) == (False, [2])
    assert mls.read_frozen({}) is None and mls.first_of([]) is None


def test_the_registry_imports_no_torch():
    code = "import sys, condensation.mls, cli.options; assert 'torch' not in sys.modules; print('ok')"
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.stdout.strip() == "ok", p.stderr
