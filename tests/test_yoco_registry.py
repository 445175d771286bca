"""The YOCO registries (yoco/registry.py): scores, selection rules and ``--pruning_key`` modifiers.

A toy score registered here, inside the test, is computed into a score file and selected by through test.py
(``toy_balance_easy`` and ``toy_easy_balance``); keys are read by exact tokens (a base whose name holds
``random``, ``ccs`` or ``_hard`` is its own); every key of the reference's grammar resolves as the reference's
argument.py resolves it (an independent re-derivation below); the help, the report names and the score file are
derived from the entries."""
import contextlib
import itertools
import json
import pickle

import pytest
import torch

import evaluation.tables  # noqa: F401  (its names are derived at import: before any toy entry is registered)
from conftest import run_cli
from data.condensed import decode, save_condensed
from fakedata import make_cifar
from utils.errors import UserError
from yoco import registry
from yoco.registry import Base, Output, register_rule, register_score, unregister_rule, unregister_score
from yoco.scores import FILE_ORDER, INPUTS, SCORES, compute_scores, save_score_file
from yoco.selection import (PruneConfig, check_pruning_key, parse_pruning_key, pruning_key_help, resolve_pruning_key,
                            select_indices)

REFERENCE_BASES = ("random", "ssp", "entropy", "accumulated_margin", "forgetting", "el2n", "ccs", "yoco")
HARDNESS, BALANCE = ("_hard", "_easy"), ("_balance", "_imbalance")


def grammar_keys(bases):
    """Every key of the grammar, derived here: a base, then at most one hardness and one balance modifier in
    either order."""
    suffixes = [""] + list(HARDNESS) + list(BALANCE)
    suffixes += [a + b for a, b in itertools.product(HARDNESS, BALANCE)]
    suffixes += [b + a for a, b in itertools.product(HARDNESS, BALANCE)]
    return {base + s for base in bases for s in suffixes}


def reference_resolution(key, ipc_t, topk):
    """(score key, balance, use_hard, stratified, random) as the reference's argument.py (its pruning-key block)
    resolves ``key``, re-derived here: a first-match substring cascade over the base, then substring tests of
    the modifiers on what is left of the key (the flags start False, as its store_true defaults)."""
    k, balance, hard, strat, rnd = key, False, False, False, False
    if any(w in k for w in ("entropy", "accumulated_margin", "forgetting", "el2n")):
        balance, hard = False, True
    elif "random" in k:
        balance, rnd = False, True
    elif "ssp" in k:
        k = k.replace("ssp", f"imbalance_kmeans_{ipc_t}")
    elif "ccs" in k:
        k, balance, hard, strat = "el2n", False, False, True
    elif "yoco" in k:
        k, balance, hard = k.replace("yoco", f"LBPE_top{topk}"), True, False
    for token, value in (("_hard", True), ("_easy", False)):
        if token in k:
            hard, k = value, k.replace(token, "")
            break
    if "_balance" in k:
        balance, k = True, k.replace("_balance", "")
        if "imbalance_kmeans" in k:
            k = f"kmeans_{ipc_t}"
    elif "_imbalance" in k:
        balance, k = False, k.replace("_imbalance", "")
    return None if rnd else k, balance, hard, strat, rnd


def as_tuple(cfg):
    return cfg.score_key, cfg.balance, cfg.use_hard, cfg.stratified, cfg.random_selection


# ---------------------------------------------------------------------------------------------------------
# the key grammar: exact tokens over the registered names

def test_accepted_keys_are_the_reference_grammar():
    assert set(registry.accepted_keys()) == grammar_keys(REFERENCE_BASES)
    assert len(registry.accepted_keys()) == 8 * 13
    assert [b.name for b in registry.pruning_bases()] == list(REFERENCE_BASES)  # YOCO Table 1's row order


@pytest.mark.parametrize("ipc_t,topk", [(1, 10), (2, 3), (5, 10)])
def test_every_key_resolves_as_the_reference(ipc_t, topk):
    for key in sorted(grammar_keys(REFERENCE_BASES)):
        r = 0.2 if key.startswith("ccs") else None  # the cut-off is read by ccs only
        cfg = resolve_pruning_key(key, ipc_f=10, ipc_t=ipc_t, topk=topk, dataset="cifar10", prune_score_ratio=r)
        assert as_tuple(cfg) == reference_resolution(key, ipc_t, topk), key
        assert cfg.prune_score_ratio == (0.2 if key.startswith("ccs") else 0.0)
        assert cfg.rule == {"random": "random", "ssp": "listed", "ccs": "stratified"}.get(key.split("_")[0], "ranked")


def test_both_orders_select_the_same_images():
    g = torch.Generator().manual_seed(0)
    scores = {k: torch.randint(0, 3, (16,), generator=g).float() for k in ("entropy", "accumulated_margin",
                                                                            "forgetting", "el2n", "LBPE_top10")}
    scores.update({"imbalance_kmeans_1": [3, 9, 1, 0, 15, 8, 2, 4], "kmeans_1": [0, 1, 2, 3, 8, 9, 10, 11]})
    for base in REFERENCE_BASES:
        for h, b in itertools.product(HARDNESS, BALANCE):
            r = 0.25 if base == "ccs" else None
            picks = []
            for key in (base + h + b, base + b + h):
                cfg = resolve_pruning_key(key, ipc_f=2, ipc_t=1, topk=10, dataset="cifar10", prune_score_ratio=r)
                picks.append(select_indices(scores, cfg, N=16, C=2, ipc_f=2, ipc_t=1, factor=2, seed=1).tolist())
            assert picks[0] == picks[1], (base, h, b)


@pytest.mark.parametrize("key", ["el2n_hard_easy", "el2n_balance_imbalance", "el2n_easy_easy", "yoco_",
                                 "random_sideways", "balance_el2n", "el2n_hard_balance_easy", "xel2n", "el2nx",
                                 "LBPE_top10", "kmeans_1", "_hard", ""])
def test_keys_outside_the_grammar_are_refused(key):
    with pytest.raises(UserError, match=r"unknown --pruning_key .*either order"):
        check_pruning_key(key)


def test_modifier_groups_and_help_are_derived():
    assert registry.modifier_groups() == {"use_hard": ["_hard", "_easy"], "balance": ["_balance", "_imbalance"]}
    assert pruning_key_help() == ("<base>[_hard|_easy][_balance|_imbalance] (modifiers in either order), base: yoco, "
                                  "random, ssp, entropy, accumulated_margin, forgetting, el2n, ccs")


def test_report_names_are_derived_from_the_bases():
    """The names evaluation/tables.py prints, as the tables had them written out before the registry."""
    assert evaluation.tables.KEY_NAMES == {
        "random": "Random", "ssp": "SSP", "entropy": "Entropy", "accumulated_margin": "AUM", "forgetting": "Forg.",
        "el2n": "EL2N", "ccs": "CCS", "yoco": "LBPE + balanced (YOCO)", "random_balance": "Random + balanced",
        "yoco_imbalance": "LBPE, imbalanced", "accumulated_margin_easy": "AUM (easy)",
        "forgetting_easy": "Forg. (easy)", "el2n_easy": "EL2N (easy)"}
    assert evaluation.tables.YOCO_KEYS == REFERENCE_BASES
    assert evaluation.tables.EASY_KEYS == ("accumulated_margin", "accumulated_margin_easy", "forgetting",
                                           "forgetting_easy", "el2n", "el2n_easy", "yoco")


# ---------------------------------------------------------------------------------------------------------
# toy entries, registered inside the tests

@pytest.fixture
def toy():
    """A toy score ``toy`` (per-image, high = hard) reading another family's output and a provided value, and a
    score whose base name holds ``random``, ``ccs`` and ``_hard`` (a high value is easy); removed afterwards."""
    @register_score("toy", inputs=("error_norms", "correctness"), direction="hard", base=Base(label="Toy"))
    def _toy(error_norms, correctness):
        return {"toy": torch.round(error_norms.sum(0)) + correctness}  # integers: many ties

    @register_score("my_random_ccs_hard", inputs=("labels",), direction="easy", base=True)
    def _tricky(labels):
        return {"my_random_ccs_hard": labels.float()}
    try:
        yield
    finally:
        unregister_score("toy")
        unregister_score("my_random_ccs_hard")
    assert set(registry.accepted_keys()) == grammar_keys(REFERENCE_BASES)


def test_toy_bases_read_by_exact_tokens(toy):
    assert set(registry.accepted_keys()) == grammar_keys(REFERENCE_BASES + ("toy", "my_random_ccs_hard"))
    base, mods = parse_pruning_key("my_random_ccs_hard")
    assert base.name == "my_random_ccs_hard" and mods == {}  # not random, not ccs, not "_hard" (the substring bug)
    cfg = resolve_pruning_key("my_random_ccs_hard", ipc_f=2, ipc_t=1, topk=10, dataset="cifar10")
    assert as_tuple(cfg) == ("my_random_ccs_hard", False, True, False, False) and cfg.rule == "ranked"
    cfg = resolve_pruning_key("my_random_ccs_hard_easy_balance", ipc_f=2, ipc_t=1, topk=10, dataset="cifar10")
    assert as_tuple(cfg) == ("my_random_ccs_hard", True, False, False, False)
    for key, expected in (("toy", ("toy", False, True, False, False)),
                          ("toy_balance_easy", ("toy", True, False, False, False)),
                          ("toy_easy_balance", ("toy", True, False, False, False)),
                          ("toy_imbalance_hard", ("toy", False, True, False, False))):
        assert as_tuple(resolve_pruning_key(key, ipc_f=2, ipc_t=1, topk=10, dataset="cifar10")) == expected
    with pytest.raises(UserError, match="unknown --pruning_key"):
        check_pruning_key("toy_hard_hard")
    assert "base: yoco, random, ssp, entropy, accumulated_margin, forgetting, el2n, ccs, my_random_ccs_hard, toy" \
        in pruning_key_help()
    from test import get_args_parser
    assert "my_random_ccs_hard, toy" in get_args_parser().format_help().replace("\n", " ").replace("  ", " ")
    assert registry.key_names()["toy"] == "Toy"
    # the declared direction: a high value is easy, so the default (hard) selection keeps the lowest values
    s = {"my_random_ccs_hard": torch.arange(16, dtype=torch.float32)}
    cfg = resolve_pruning_key("my_random_ccs_hard", ipc_f=2, ipc_t=1, topk=10, dataset="cifar10")
    assert select_indices(s, cfg, N=16, C=2, ipc_f=2, ipc_t=1, factor=2).tolist() == list(range(8))


def test_a_key_with_two_readings_is_refused_at_registration(toy):
    with pytest.raises(ValueError, match="would read as base"):
        register_score("toy_hard", inputs=("labels",), direction="hard", base=True)(lambda labels: {})
    assert "toy_hard" not in SCORES and "toy_hard" not in registry.BASES
    with pytest.raises(ValueError, match="registered already"):
        register_score("toy2", inputs=("labels",), direction="hard", outputs=(Output("el2n", base=Base()),))(
            lambda labels: {})
    with pytest.raises(ValueError, match="direction"):
        register_score("toy3", inputs=("labels",))(lambda labels: {})  # per-image scores need a direction
    assert not {"toy2", "toy3"} & set(SCORES)


def scripted(n_classes=3, per_class=4, epochs=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    logp = torch.randn(epochs, n_classes * per_class, n_classes, generator=g).log_softmax(2)
    return logp, torch.arange(n_classes).repeat_interleave(per_class)


def test_scores_run_in_the_order_of_their_inputs(toy):
    """``toy_late`` reads ``toy_early``'s key and is registered first; the file lists the reference's keys in its
    order, then the other scores' keys by score name."""
    @register_score("toy_late", inputs=("toy_early",), direction="hard")
    def _late(toy_early):
        return {"toy_late": toy_early * 2}

    @register_score("toy_early", inputs=("labels",), direction="hard", provides=("toy_secret",))
    def _early(labels):
        return {"toy_early": labels.float() + 1, "toy_secret": 0}
    try:
        names = [s.name for s in registry.computation_order(set(INPUTS))]
        assert names.index("toy_early") < names.index("toy_late") and names.index("dynamics") < names.index("toy")
        assert names.index("dynamics") < names.index("el2n") < len(names)
        logp, y = scripted()
        d = compute_scores(logp, y, stop_epoch=3, topk=2)
        keys = list(d)
        ours = ["my_random_ccs_hard", "toy", "toy_early", "toy_late"]  # by score name, after the reference's
        assert keys[-4:] == ours and "toy_secret" not in d and "error_norms" not in d
        assert torch.equal(d["toy_late"], (y.float() + 1) * 2)
        assert torch.equal(d["toy"], torch.round(d["el2n"]) + d["correctness"])
        assert d["el2n"] is d["LBPE_0_10"]
        assert set(FILE_ORDER) <= set(SCORES)
    finally:
        unregister_score("toy_late")
        unregister_score("toy_early")


@contextlib.contextmanager
def toy_scores(*entries):
    """Register ``(name, inputs, fn)`` score entries for the block, and unregister them after it."""
    try:
        for name, inputs, fn in entries:
            register_score(name, inputs=inputs, direction="hard")(fn)
        yield
    finally:
        for name, _, _ in entries:
            if name in SCORES:
                unregister_score(name)


def test_score_registration_errors():
    logp, y = scripted()
    for entries, message in (
            ([("toy_undeclared", ("labels",), lambda labels: {"something_else": labels})],
             "does not declare: something_else"),
            ([("toy_orphan", ("nobody_writes_this",), lambda nobody_writes_this: {})], "nobody_writes_this"),
            ([("toy_a", ("toy_b",), lambda toy_b: {}), ("toy_b", ("toy_a",), lambda toy_a: {})], "cycle")):
        with toy_scores(*entries), pytest.raises(ValueError, match=message):
            compute_scores(logp, y, stop_epoch=3, topk=2)
    assert list(compute_scores(logp, y, stop_epoch=3, topk=2))[-1] == "LBPE_top2"  # nothing left behind


def test_outputs_declare_kind_and_direction():
    out = registry.output_of
    assert (out("kmeans_2").kind, out("imbalance_kmeans_10").kind) == ("clustering", "clustering")
    assert out("accumulated_margin").direction == "easy"
    assert [out(k).direction for k in ("el2n", "entropy", "forgetting", "LBPE_top7", "LBPE_3_4")] == ["hard"] * 5
    assert out("LBPE_0_10").pattern == "LBPE_0_10"  # a literal declaration before a pattern
    assert out("correct_num").kind == "stats" and out("neg_loss_epoch").kind == "stats"
    assert out("not_a_key") is None and out("kmeans_x") is None


def test_a_toy_rule_and_its_base():
    @register_rule("lowest_index", reads=None, bases=(Base("firsts", key=None, hard=False, label="Firsts"),))
    def _firsts(values, cfg, sel):
        if cfg.balance:
            return torch.cat([torch.arange(a, a + sel.m) for a, _ in sel.blocks])
        return torch.arange(sel.M)
    try:
        cfg = resolve_pruning_key("firsts_balance", ipc_f=2, ipc_t=1, topk=10, dataset="cifar10")
        assert cfg.rule == "lowest_index" and cfg.score_key is None and cfg.balance
        assert select_indices(None, cfg, N=16, C=2, ipc_f=2, ipc_t=1, factor=2).tolist() == [0, 1, 2, 3, 8, 9, 10, 11]
        cfg = resolve_pruning_key("firsts", ipc_f=2, ipc_t=1, topk=10, dataset="cifar10")
        assert select_indices(None, cfg, N=16, C=2, ipc_f=2, ipc_t=1, factor=2).tolist() == list(range(8))
        with pytest.raises(UserError, match="only with --pruning_key ccs"):
            resolve_pruning_key("firsts", ipc_f=2, ipc_t=1, topk=10, dataset="cifar10", prune_score_ratio=0.1)
    finally:
        unregister_rule("lowest_index")
    assert "firsts" not in registry.BASES and "lowest_index" not in registry.RULES


def test_hand_made_configurations_get_the_rule_of_their_flags_and_kind():
    assert PruneConfig("el2n", False, True, False, False, 0.0).rule == "ranked"
    assert PruneConfig("kmeans_1", True, False, False, False, 0.0).rule == "listed"
    assert PruneConfig(None, True, False, False, True, 0.0).rule == "random"
    assert PruneConfig("accumulated_margin", False, True, True, False, 0.25).rule == "stratified"
    assert PruneConfig("el2n", False, True, False, False, 0.0) == resolve_pruning_key(
        "el2n", ipc_f=10, ipc_t=1, topk=10, dataset="cifar10")


# ---------------------------------------------------------------------------------------------------------
# the toy score through test.py

C, IPC_F, IPC_T, F = 10, 2, 1, 2


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy_world")
    make_cifar(str(root / "data"), 10)
    g = torch.Generator().manual_seed(7)
    x, y = torch.rand(C * IPC_F, 3, 32, 32, generator=g), torch.arange(C).repeat_interleave(IPC_F)
    save_condensed(str(root / "set" / "data.pt"), x, y)
    return root, x, y


def test_toy_score_selects_through_test_py(toy, world, tmp_path):
    root, x, y = world
    dec, dec_y = decode(x, y, F, "single", C)
    n, n_c, m = len(dec), IPC_F * F * F, IPC_T * F * F
    g = torch.Generator().manual_seed(3)
    logp = torch.randn(3, n, C, generator=g).log_softmax(2)
    scores = compute_scores(logp, dec_y, stop_epoch=3, topk=2)
    save_score_file(str(tmp_path / "toy.pickle"), scores)
    with open(tmp_path / "toy.pickle", "rb") as f:
        toy_values = pickle.load(f)["toy"].tolist()
    assert len(set(toy_values)) < n  # ties, which go to the lower decoded index
    # independent expectation: per class, the m lowest toy values (easy: high is hard), ties to the lower index
    want = [i for c in range(C) for i in sorted(range(c * n_c, (c + 1) * n_c), key=lambda i: (toy_values[i], i))[:m]]
    for key in ("toy_balance_easy", "toy_easy_balance"):
        sub, results = tmp_path / f"{key}.pt", tmp_path / f"{key}.json"
        run_cli("test.py", "-d", "cifar10", "--ipc", IPC_F, "--slct_ipc", IPC_T, "--test_data_dir", root / "set",
                "--score_file", tmp_path / "toy.pickle", "--pruning_key", key, "--epochs", 1, "--no_resnet",
                "--data_dir", root / "data", "--device", "cpu", "--results_file", results, "--save_subset", sub)
        got = torch.load(sub, weights_only=True)
        assert torch.equal(got[0], dec[want]) and torch.equal(got[1], dec_y[want]), key
        with open(results) as f:
            pruning = json.load(f)[-1]["args"]["pruning"]
        assert pruning["score_key"] == "toy" and pruning["balance"] and not pruning["use_hard"]
        assert (pruning["n_full"], pruning["n_selected"], pruning["n_distinct"]) == (n, m * C, m * C)
