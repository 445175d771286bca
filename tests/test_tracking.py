"""Experiment tracking (tracking/client.py, docs/tracking.md) with the real libraries, read back with their own
readers: Aim's ``Repo`` API and TensorBoard's event reader.

Fast tier: the flags, the one-line error for a tracker that is not installed, the reference's run names, the
record-to-series mapping. Slow tier (subprocesses on fake CIFAR-10): an MDC smoke condensation (MLS moving, a
freeze) tracked to Aim and to TensorBoard, each killed with SIGKILL after a checkpoint and resumed: one Aim run,
no step twice, hyper-parameters = ``args.yaml``, every curve = the run's ``metrics.jsonl``, image sequences,
and data/records byte-identical to an untracked run; a full or unreachable Aim repository costs one warning
line and nothing else; ``test.py`` and the dynamics run track their per-epoch series.
"""
import collections
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from conftest import ROOT, run_cli, run_script, script_env
from fakedata import make_cifar
from helpers import aim_runs
from utils.errors import UserError


# ------------------------------------------------------------------------------------------------
# fast tier


@pytest.mark.parametrize("flags,package", [(["--use_aim", "True"], "aim"), (["--tracker", "aim"], "aim"),
                                           (["--tracker", "tensorboard"], "tensorboard")])
@pytest.mark.parametrize("script", ["condense_reg.py", "condense_reg_mp.py", "condense.py", "test.py",
                                    "get_training_dynamics.py"])
def test_a_tracker_that_is_not_installed_is_a_one_line_error(script, flags, package, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, package, None)  # what Python does for a package that is not there
    args = {"get_training_dynamics.py": ["-d", "cifar10", "--custom-data-dir", str(tmp_path / "none")],
            "test.py": ["-d", "cifar10", "-s", "random", "--ipc", "1"]}.get(
        script, ["-d", "cifar10", "--ipc", "2", "--nclass_sub", "5", "--phase", "0"] if script.endswith("_mp.py")
        else ["-d", "cifar10", "--ipc", "2"])
    p = run_cli(script, *args, *flags, "--save_dir" if script.startswith("condense") else "--device",
                str(tmp_path / "run") if script.startswith("condense") else "cpu", check=False)
    assert p.returncode == 2, p.stderr
    line = p.stderr.strip()
    assert "\n" not in line and f"needs the {package} package" in line and "pip install -r requirements-tracking.txt" \
        in line, line
    assert not os.path.exists(tmp_path / "run")  # before any work


def test_use_aim_and_tensorboard_together_are_refused():
    from tracking.client import tracker_of

    class A:
        use_aim, tracker = True, "tensorboard"
    with pytest.raises(UserError, match="pass one of them"):
        tracker_of(A())
    A.tracker = "aim"
    assert tracker_of(A()) == "aim"
    A.use_aim, A.tracker = False, "none"
    assert tracker_of(A()) is None


def test_run_names_follow_the_reference():
    from condense_reg import get_args_parser
    from test import get_args_parser as test_parser
    from cli.arguments import parse_args
    from tracking.client import mdc_run_name, test_names

    a = parse_args(get_args_parser(), ["-d", "cifar10", "--ipc", "10", "-f", "2", "--adaptive_reg", "True",
                                       "--adaptive_period", "50", "--tag", "x", "--batch_syn_max", "64"])
    assert mdc_run_name(a) == "cifar10_ipc10__x_50_synmax64"  # its tag already began with "_"
    a = parse_args(get_args_parser(), ["-d", "cifar100", "--ipc", "5", "--run_name", "mine", "-s", "dream"])
    assert mdc_run_name(a) == "mine_dream"
    t = parse_args(test_parser(), ["-d", "cifar10", "--ipc", "10", "--slct_ipc", "1", "--pruning_key", "yoco"])
    assert test_names(t) == ("YOCO-cifar10-reproduce", "idc_cifar10_IPC10->1_yoco")
    t = parse_args(test_parser(), ["-d", "fashion", "--ipc", "4", "-s", "random", "--exp_name", "E"])
    assert test_names(t) == ("E", "fashion_ipc4")


def test_records_map_to_the_reference_names():
    from tracking.client import condensation_series

    def ser(rec, classes=(0, 1)):
        out = condensation_series(rec, list(classes), "convnet")
        return {(k, n, tuple(sorted(c.items()))): v for k, n, v, c in out}
    assert ser({"type": "net", "it": 3, "top1": 50.0, "loss": 1.5}) == {
        ("scalar", "top1", (("subset", "model"),)): 50.0, ("scalar", "loss", (("subset", "model"),)): 1.5}
    s = ser({"type": "mls", "it": 5, "mls": 2, "dbar": [1.234, 2.0], "delta": [0.5, 0.25]})
    assert s[("text", "regularized_ipc", (("subset", "class_1"),))] == "Reg ipc: [2]"
    # the reference's texts: torch.round of the float32 vector, printed with its float32 digits
    assert s[("text", "loss", (("subset", "cur_loss"),))] == "[1.2300000190734863, 2.0]"
    assert s[("text", "loss_list", (("subset", "diff"),))] == "[0.5, 0.25]"
    assert s[("scalar", "delta", (("ipc", "ipc2"), ("subset", "all")))] == 0.25
    s = ser({"type": "mls", "it": 1, "mls": [1, 1], "dbar": [[1.0, 2.0], [3.0, 4.0]], "delta": [None, None]})
    assert ("text", "loss_list", (("subset", "diff"),)) not in s  # no Δ at the first window
    assert s[("text", "loss", (("subset", "cur_loss"),))] == "[3.0, 4.0]"  # class-wise: the last class's
    assert s[("scalar", "dbar", (("ipc", "ipc1"), ("subset", "class_1")))] == 3.0
    s = ser({"type": "eval", "it": 0, "subset": "ipc3", "net": "resnet10_bn", "best": 9.0, "best_std": 1.0,
             "last": 8.0})
    assert s[("scalar", "best acc", (("net", "resnet10_bn"), ("subset", "ipc3")))] == 9.0
    assert ser({"type": "save", "it": 2, "file": "data_2.pt"}) == {}


# ------------------------------------------------------------------------------------------------
# slow tier: the real libraries, end to end

SEED_RUN = ["--niter", "1", "--inner_loop", "2", "--adaptive_period", "1", "--stop_after", "4", "--seed", "0"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    r = str(tmp_path_factory.mktemp("cifar30"))
    make_cifar(r, 10, n_train=300, n_test=100)
    return r


def condense_args(root, out, *extra):
    """MDC smoke: 4 outer iterations of 2 inner steps, a window and a save point at each; with seed 0 the MLS
    moves to 2 at iteration 3 and IPC-1 is frozen at 4 (checked by the tests)."""
    return ["-d", "cifar10", "--data_dir", root, "--device", "cpu", "--width", "0.125", "--n_data", "16",
            "--batch_real", "8", "--ipc", "3", "-f", "2", "--adaptive_reg", "True", "--eval_epochs", "1",
            "--deterministic", "True", *SEED_RUN, "--save_dir", str(out), *extra]


def records(folder):
    with open(os.path.join(folder, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def same_outputs(a, b):
    """Byte-identical data files and records (but the wall times) of run ``b`` and the same iterations of ``a``."""
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(b, "data_*.pt")))
    assert names and set(names) <= {os.path.basename(p) for p in glob.glob(os.path.join(a, "data_*.pt"))}
    for n in names:
        with open(os.path.join(a, n), "rb") as fa, open(os.path.join(b, n), "rb") as fb:
            assert fa.read() == fb.read(), n

    def strip(recs):
        return [{k: v for k, v in r.items() if k not in ("seconds", "sec_per_it")} for r in recs]
    last = max(r["it"] for r in records(b))
    assert strip(r for r in records(a) if r["it"] <= last) == strip(records(b))


DIE_IN_EVALUATION = """import os, runpy, signal, sys
import condensation.loop as loop
evaluate_set, calls = loop.evaluate_set, []
def dying(*a, **k):
    calls.append(1)
    if len(calls) == {n}:  # kill -9 of itself inside its n-th in-run evaluation
        os.kill(os.getpid(), signal.SIGKILL)
    return evaluate_set(*a, **k)
loop.evaluate_set = dying
sys.argv = {argv!r}
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def killed_and_resumed(args, folder, die_in_evaluation=None):
    """Run ``condense_reg.py args`` and SIGKILL it, then resume it to the end; returns the resumed run's output.
    The kill comes as soon as the run has tracked iteration 3's network (at a point the timing decides: before
    or after iteration 3's checkpoint, or among its evaluations), or, with ``die_in_evaluation`` n, inside the
    n-th in-run evaluation (after that save point's checkpoint, before its ``save`` record)."""
    argv = [os.path.join(ROOT, "condense_reg.py"), *map(str, args)]
    code = DIE_IN_EVALUATION.format(n=die_in_evaluation, argv=argv) if die_in_evaluation else None
    cmd = [sys.executable, "-c", code] if code else [sys.executable, *argv]
    proc = subprocess.Popen(cmd, env=script_env(), cwd=ROOT, stdout=subprocess.DEVNULL, text=True,
                            stderr=subprocess.PIPE if code else subprocess.DEVNULL)  # the poll loop reads no pipe
    if die_in_evaluation:
        err = proc.communicate(timeout=300)[1]
        assert proc.returncode == -signal.SIGKILL, err[-3000:]
    else:
        path, deadline = os.path.join(folder, "metrics.jsonl"), time.time() + 300
        while proc.poll() is None and time.time() < deadline:
            if os.path.exists(path) and any(r.get("type") == "net" and r["it"] == 3 for r in records(folder)):
                break
            time.sleep(0.005)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
    p = run_script("condense_reg.py", *args, "--resume")
    assert "resumed from" in p.stdout
    return p.stdout + p.stderr


def f32_round2(values):
    """What the reference printed (its reg_ipcx.py/condense_reg.py): torch.round(float32 vector, decimals=2)."""
    import torch

    return torch.round(torch.tensor(values, dtype=torch.float32), decimals=2).tolist()


def expected_curves(recs):
    """What the tracker must hold, stated from the records (the reference's names and contexts, ours beside)."""
    scalars, texts = collections.defaultdict(dict), collections.defaultdict(dict)
    for r in recs:
        it = r["it"]
        if r["type"] == "net":
            scalars[("top1", (("subset", "model"),))][it] = r["top1"]
            scalars[("loss", (("subset", "model"),))][it] = r["loss"]
        elif r["type"] == "loss":
            scalars[("loss", (("subset", "train"),))][it] = r["loss"]
            scalars[("sec_per_it", (("subset", "train"),))][it] = r["sec_per_it"]
            scalars[("frozen", (("subset", "all"),))][it] = r["frozen"]
        elif r["type"] == "mls":
            scalars[("mls", (("subset", "all"),))][it] = r["mls"]
            for name in ("dbar", "delta"):
                for i, v in enumerate(r[name] or []):
                    scalars[(name, (("ipc", f"ipc{i + 1}"), ("subset", "all")))][it] = v
            for c in range(10):
                texts[("regularized_ipc", (("subset", f"class_{c}"),))][it] = f"Reg ipc: [{r['mls']}]"
            texts[("loss", (("subset", "cur_loss"),))][it] = str(f32_round2(r["dbar"]))
            if r["delta"] is not None:
                texts[("loss_list", (("subset", "diff"),))][it] = str(f32_round2(r["delta"]))
        elif r["type"] == "eval":
            for name, key in (("best acc", "best"), ("std", "best_std"), ("last acc", "last")):
                scalars[(name, (("subset", r["subset"]),))][it] = r[key]
    return scalars, texts


def check_run_shape(recs):
    """The smoke did what the tracking tests rely on: the MLS moved and a prefix was frozen."""
    assert {r["mls"] for r in recs if r["type"] == "mls"} >= {1, 2}
    assert any(r["frozen"] > 0 for r in recs if r["type"] == "loss")


@pytest.fixture(scope="module")
def plain(root, tmp_path_factory):
    out = tmp_path_factory.mktemp("plain") / "run"
    run_script("condense_reg.py", *condense_args(root, out))
    check_run_shape(records(out))
    return out


@pytest.mark.slow
def test_aim_tracks_the_reference_names_and_survives_kill_9(root, plain, tmp_path):
    out, repo = tmp_path / "run", tmp_path / "aimrepo"
    log = killed_and_resumed(condense_args(root, out, "--use_aim", "True", "--aim_repo", repo), out)
    assert "warning" not in log, log[-3000:]
    same_outputs(plain, out)  # tracking, and the kill, changed no number
    recs = records(out)
    (run,) = aim_runs(repo)  # the resumed invocation continued the same Aim run
    assert run["hash"] == __import__("torch").load(out / "run_hash.pt", weights_only=True)
    assert (run["name"], run["experiment"]) == ("cifar10_ipc3_1", "MDC")
    assert run["hparams"] == yaml.safe_load((out / "args.yaml").read_text())
    scalars, texts = expected_curves(recs)
    ours = {k: v for k, v in run["metrics"].items()}
    assert set(ours) == set(scalars)
    for key, want in scalars.items():
        steps, values = ours[key]
        assert steps == sorted(want), key  # every step once, in order
        assert list(values) == [want[s] for s in steps], key
    for key, want in texts.items():
        got = run["seqs"][key]
        assert sorted(got) == sorted(want) and all(got[s].data == want[s] for s in want), key
    assert sorted(run["seqs"][("init.png", ())]) == [0] and sorted(run["seqs"][("aug.png", ())]) == [0]
    saves = [r["it"] for r in recs if r["type"] == "save"]
    assert sorted(run["seqs"][("syn image", (("subset", "test"),))]) == saves
    assert run["seqs"][("precision", ())][0].data == "fp32"
    assert glob.glob(str(out / "cifar10_ipc3_1_*.txt"))  # the reference's terminal-log export


def tb_events(folder):
    """TensorBoard's own reader: scalars {tag: [(step, value)]}, texts and images {tag: [steps]}, the last
    hyper-parameter set (HPARAMS plugin data) and the texts' values."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import plugin_data_pb2

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    scalars = {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in tags["scalars"]}
    images = {t: [e.step for e in acc.Images(t)] for t in tags["images"]}
    texts = {t: {e.step: e.tensor_proto.string_val[0].decode() for e in acc.Tensors(t)} for t in tags["tensors"]}
    hparams = None
    for path in sorted(glob.glob(os.path.join(folder, "events.out.tfevents.*"))):
        for ev in EventFileLoader(path).Load():
            for v in ev.summary.value:
                if v.metadata.plugin_data.plugin_name == "hparams" and v.tag == "_hparams_/session_start_info":
                    data = plugin_data_pb2.HParamsPluginData.FromString(v.metadata.plugin_data.content)
                    hparams = {k: x.WhichOneof("kind") and getattr(x, x.WhichOneof("kind"))
                               for k, x in data.session_start_info.hparams.items()}
    return scalars, images, texts, hparams


@pytest.mark.slow
def test_tensorboard_tracks_the_same_and_survives_kill_9(root, plain, tmp_path):
    out = tmp_path / "run"
    # killed among iteration 3's evaluations (calls 1-3: iteration 0; 4-6, 7-9: save points 1, 2; 10-12: 3),
    # after its checkpoint: the resume re-does them
    log = killed_and_resumed(condense_args(root, out, "--tracker", "tensorboard"), out, die_in_evaluation=11)
    assert "warning" not in log and "it 3: the save point's evaluations were cut off" in log, log[-3000:]
    same_outputs(plain, out)
    recs = records(out)
    scalars, images, texts, hparams = tb_events(out / "tensorboard")
    want_scalars, want_texts = expected_curves(recs)
    tag = {key: "/".join([key[0]] + [v for _, v in sorted(key[1], key=lambda kv: kv[0] != "subset")])
           for key in list(want_scalars) + list(want_texts)}
    assert set(scalars) == {tag[k] for k in want_scalars}
    for key, want in want_scalars.items():
        got = scalars[tag[key]]
        assert [s for s, _ in got] == sorted(want), key  # the killed run's later steps were purged
        assert [v for _, v in got] == [float(np.float32(want[s])) for s, _ in got], key
    for key, want in want_texts.items():
        assert texts[tag[key]] == want, key
    saves = [r["it"] for r in recs if r["type"] == "save"]
    assert images == {"init.png": [0], "aug.png": [0], "syn image/test": saves}
    args = yaml.safe_load((out / "args.yaml").read_text())
    # the HPARAMS plugin keeps numbers (bools among them) as floats, the rest as text
    assert hparams == {k: float(v) if isinstance(v, (bool, int, float)) else v if isinstance(v, str) else str(v)
                       for k, v in args.items()}
    assert list(texts["args.yaml"].values())[-1] == (out / "args.yaml").read_text()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def full_disk(tmp_path):
    """A 2 MiB file system (tmpfs) for the Aim repository: it fills up while the run tracks."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({p.stderr.strip()})")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.slow
def test_a_failing_tracker_costs_one_warning_line(root, plain, tmp_path, full_disk):
    for i, repo in enumerate((f"aim://127.0.0.1:{free_port()}", str(full_disk / "aim"))):
        out = tmp_path / f"run{i}"
        # no server: fails at the start (2 iterations do); the small disk fills up in the middle of the run
        stop = ["--stop_after", "2"] if i == 0 else []
        p = run_script("condense_reg.py", *condense_args(root, out, "--use_aim", "True", "--aim_repo", repo, *stop))
        said = [line for line in (p.stdout + p.stderr).splitlines() if "warning" in line.lower()]
        assert len(said) == 1 and "experiment tracking stopped" in said[0], said
        assert "Traceback" not in p.stderr, p.stderr[-2000:]
        same_outputs(plain, out)


@pytest.mark.slow
def test_test_py_tracks_each_epoch_and_the_result(root, tmp_path):
    repo = tmp_path / "aimrepo"
    run_script("test.py", "-d", "cifar10", "-s", "random", "--ipc", "2", "-f", "1", "--data_dir", root, "--device",
               "cpu", "--width", "0.125", "--repeat", "2", "--epochs", "4", "--use_aim", "True", "--aim_repo", repo,
               "--run_tag", "t1", "--results_file", tmp_path / "r.json")
    (run,) = aim_runs(repo)
    assert (run["experiment"], run["name"], run["tags"]) == ("MDC", "cifar10_ipc2", ["t1"])
    m = run["metrics"]
    for r in (0, 1):
        for name in ("train_acc", "train_loss", "test_acc", "test_loss"):  # validations every epoch (E//4 = 1)
            assert m[(name, (("repeat", r), ("subset", "convnet")))][0] == [1, 2, 3, 4], name
    rec = json.loads((tmp_path / "r.json").read_text())[-1]["results"]["convnet"]
    assert m[("best acc", (("subset", "convnet"),))][1] == [rec["best"]["mean"]]
    assert m[("last acc", (("subset", "convnet"),))][1] == [rec["last"]["mean"]]
    assert m[("std", (("subset", "convnet"),))][1] == [rec["best"]["std"]]


@pytest.mark.slow
def test_dynamics_tracks_each_epoch_across_a_resume(root, tmp_path):
    from data.condensed import save_condensed
    import torch

    g = torch.Generator().manual_seed(0)
    save_condensed(str(tmp_path / "idc" / "data.pt"), torch.rand(20, 3, 32, 32, generator=g),
                   torch.arange(10).repeat_interleave(2))
    base = tmp_path / "dyn"
    args = ["-d", "cifar10", "--condense_key", "idc", "--custom-data-dir", tmp_path / "idc", "--base-dir", base,
            "--device", "cpu", "--epochs", "5", "--test-period", "2", "--data-dir", root, "--tracker", "tensorboard"]
    run_script("get_training_dynamics.py", *args, "--stop-after-epochs", "3", "--save-every", "2")
    run_script("get_training_dynamics.py", *args, "--resume")
    (folder,) = glob.glob(str(base / "*" / "tensorboard"))
    scalars, _, _, hparams = tb_events(folder)
    for name in ("lr", "train_loss", "train_acc"):
        assert [s for s, _ in scalars[name]] == [0, 1, 2, 3, 4], name
    for name in ("test_loss", "test_acc"):  # epochs 0, 2, 4 (every --test-period and the last)
        assert [s for s, _ in scalars[name]] == [0, 2, 4], name
    assert hparams["resume"] == 1.0 and hparams["epochs"] == 5
