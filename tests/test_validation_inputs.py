"""The files the YOCO steps and the partition merge read are checked field by field, each format in one place, with
one-line errors naming the file, the record / key and the field, and the fix (docs/failures.md, "Bad input is
refused before any work"): training-dynamics logs (reference pickle, compact, stats; yoco/dynamics_io.py), the
dynamics run's resume state, chunks and checkpoint (yoco/dynamics.py), score files (yoco/scores.py) and the class
partitions' args.yaml, data files and manifest.json (data/partitions.py). The advice of a message names only options
of the command that prints it, or of another script's command line quoted in backticks."""
import copy
import json
import os
import pickle
import re
import types

import numpy as np
import pytest
import torch

from conftest import run_cli
from fakedata import make_cifar
from helpers import OTHER_PROGRAMS, flags_of, refused, snapshot
from utils.errors import UserError

FLAG = r"(?<![\w/.-])(--[a-zA-Z][\w-]*)"
REGEN = "regenerate it with get_training_dynamics.py"


def one_line(call, *needles):
    """``call()`` raises a one-line ``UserError`` holding every needle; returns its text."""
    with pytest.raises(UserError) as e:
        call()
    msg = str(e.value)
    assert "\n" not in msg, msg
    for n in needles:
        assert n in msg, (n, msg)
    return msg


def advice_flags_ok(line, script):
    """Every option the line names is the script's, or belongs to another script the advice names (``re-run
    get_training_dynamics.py with a lower --lr``, ``condense_reg_mp.py ... --phase 1 --resume``), which has it; an
    option inside a backticked command line is that command's."""
    foreign = set()
    for span in re.findall(r"`([^`]*)`", line):
        m = re.search(r"(\w+\.py)\b", span)
        if m:
            named = set(re.findall(FLAG, span)) - OTHER_PROGRAMS
            assert named <= flags_of(m.group(1)), (span, named - flags_of(m.group(1)))
    for other in set(re.findall(r"(?<![\w/.-])(\w+\.py)\b", line)) - {script}:
        if os.path.exists(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), other)):
            foreign |= flags_of(other)
    named = set(re.findall(FLAG, line)) - OTHER_PROGRAMS
    assert named <= flags_of(script) | foreign, f"{script} has no {named - flags_of(script) - foreign}: {line}"
    return named - flags_of(script)


def refused_quoting(world, script, args, needle):
    """``helpers.refused`` for messages that quote another script's command line (advice_flags_ok)."""
    before = snapshot(world)
    p = run_cli(script, *args, cwd=world, check=False)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2 and "Traceback" not in p.stderr + p.stdout, p.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], p.stderr
    assert snapshot(world) == before, "a refused command changed the working folder"
    return lines[0], advice_flags_ok(lines[0], script)


def dump(path, obj):
    os.makedirs(os.path.dirname(str(path)) or ".", exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f)
    return str(path)


def cut(path, dst):
    data = open(path, "rb").read()
    with open(dst, "wb") as f:
        f.write(data[:len(data) // 2])
    return str(dst)


# ---- training-dynamics logs ---------------------------------------------------------------------------------------

def records(n=4, c=3, epochs=2, b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for e in range(epochs):
        perm = torch.randperm(n, generator=g)
        for it in range(0, n, b):
            idx = perm[it:it + b].long()
            out.append({"epoch": e, "iteration": it // b, "idx": idx,
                        "output": torch.randn(len(idx), c, generator=g).log_softmax(1).half()})
    return out


def _set(rec, key, value):
    rec[key] = value


LOG_CASES = [  # (how the log is damaged, words of the message)
    (lambda d: d.pop("training_dynamics"), "field 'training_dynamics' is missing"),
    (lambda d: _set(d, "data-name", 5), "field 'data-name' is 5, expected a string"),
    (lambda d: _set(d, "training_dynamics", {"a": 1}), "field 'training_dynamics' is a mapping of 1 keys"),
    (lambda d: _set(d["training_dynamics"], 1, [1, 2]), "record 1 is a list of 2 items, not a mapping"),
    (lambda d: d["training_dynamics"][1].pop("idx"), "record 1: field 'idx' is missing"),
    (lambda d: _set(d["training_dynamics"][1], "epoch", True), "record 1: field 'epoch' is True, expected an integer"),
    (lambda d: _set(d["training_dynamics"][1], "epoch", -1), "record 1: field 'epoch' is -1, below 0"),
    (lambda d: _set(d["training_dynamics"][2], "iteration", "3"), "record 2: field 'iteration' is '3'"),
    (lambda d: _set(d["training_dynamics"][1], "idx", torch.tensor([0.0, 1.0])),
     "record 1: field 'idx' holds float32 values, expected integers"),
    (lambda d: _set(d["training_dynamics"][1], "idx", torch.tensor([-1, 2])), "record 1: field 'idx' holds -1 at 0"),
    (lambda d: _set(d["training_dynamics"][1], "idx", [0, 1]), "record 1: field 'idx' is list, expected a tensor"),
    (lambda d: _set(d["training_dynamics"][1], "output", torch.zeros(2, 3, dtype=torch.int64)),
     "record 1: field 'output' holds int64 values"),
    (lambda d: d["training_dynamics"][1]["output"].__setitem__((0, 0), float("nan")),
     "record 1: field 'output' holds 1 NaN/Inf values of 6"),
    (lambda d: d["training_dynamics"][3]["output"].__setitem__((1, 2), float("inf")),
     "record 3: field 'output' holds 1 NaN/Inf values"),
    (lambda d: _set(d["training_dynamics"][1], "output", torch.zeros(3, 3)),
     "record 1: field 'output' has shape (3, 3), expected (2, 3)"),
    (lambda d: _set(d["training_dynamics"][2], "output", torch.zeros(2, 4)),
     "record 2: field 'output' has shape (2, 4), expected (2, 3)"),
    (lambda d: _set(d["training_dynamics"][1], "output", torch.zeros(6)),
     "record 1: field 'output' has 1 dimensions (6,), expected 2"),
]


@pytest.mark.parametrize("damage,needle", LOG_CASES, ids=[c[1][:40] for c in LOG_CASES])
def test_reference_log_fields(tmp_path, damage, needle):
    from yoco.dynamics_io import load_dynamics, load_epoch_arrays

    d = {"data-name": "cifar10", "training_dynamics": records()}
    damage(d)
    path = dump(tmp_path / "td-ipc1.pickle", d)
    for load in (load_dynamics, load_epoch_arrays):
        one_line(lambda: load(path), path, needle, REGEN)


def test_reference_log_edges(tmp_path):
    from yoco.dynamics_io import load_dynamics, load_epoch_arrays

    recs = records()
    recs[0]["output"][0, 0] = float("-inf")  # log 0: a probability of 0 is a number
    good = dump(tmp_path / "good.pickle", {"data-name": "cifar10", "training_dynamics": recs})
    assert len(load_dynamics(good)["training_dynamics"]) == len(recs)
    open(tmp_path / "empty.pickle", "wb").close()
    one_line(lambda: load_dynamics(str(tmp_path / "empty.pickle")), "empty.pickle", "is empty (0 bytes)", "regenerate")
    short = cut(good, tmp_path / "short.pickle")
    one_line(lambda: load_dynamics(short), short, "truncated or damaged")
    recs[3]["idx"] = torch.tensor([0, 0])  # sample 0 twice in epoch 1
    twice = dump(tmp_path / "twice.pickle", {"data-name": "cifar10", "training_dynamics": recs})
    one_line(lambda: load_epoch_arrays(twice), twice, "epoch 1: sample", "once per epoch", REGEN)
    gap = [r for r in records(epochs=3) if r["epoch"] != 1]
    gapped = dump(tmp_path / "gap.pickle", {"data-name": "cifar10", "training_dynamics": gap})
    one_line(lambda: load_epoch_arrays(gapped), gapped, "epochs 0..E-1 without gaps", REGEN)


def _compact(tmp_path, name="td.pt"):
    from yoco.dynamics_io import save_compact

    path = str(tmp_path / name)
    save_compact(path, "cifar10", records(), num_samples=4)
    return path


def _corrupt_logp(b):
    b["logp"] = torch.full_like(b["logp"], 7)


COMPACT_CASES = [
    (lambda b: _set(b, "version", True), "field 'version' is True, expected an integer"),
    (lambda b: _set(b, "version", 2), "field 'version' is 2, not one of 1"),
    (lambda b: _set(b, "format", "other"), "field 'format' is 'other'"),
    (lambda b: _set(b, "num_samples", "4"), "field 'num_samples' is '4'"),
    (lambda b: _set(b, "num_classes", 0), "field 'num_classes' is 0, below 1"),
    (lambda b: b.pop("data-name"), "field 'data-name' is missing"),
    (lambda b: _set(b, "epochs", torch.tensor([0, 2])), "field 'epochs' is [0, 2]"),
    (lambda b: _set(b, "offsets", b["offsets"][:, :2]), "field 'offsets' has shape (2, 2), expected (2, 3)"),
    (lambda b: b["offsets"].__setitem__((0, 2), 3), "field 'offsets[0]' is not 0"),
    (lambda b: b["records"].__setitem__((1, 2), 5), "field 'records' epoch 0 holds 7 samples, not num_samples = 4"),
    (lambda b: b["records"].__setitem__((0, 1), -1), "field 'records' holds -1"),
    (lambda b: _set(b, "records", b["records"][:, :2]), "field 'records' has shape"),
    (lambda b: _set(b, "logp", b["logp"].long()), "field 'logp' holds torch.int64, expected uint8"),
    (_corrupt_logp, "field 'logp' epoch 0: its packed bytes do not hold a [4, 3] array"),
]


@pytest.mark.parametrize("damage,needle", COMPACT_CASES, ids=[c[1][:40] for c in COMPACT_CASES])
def test_compact_log_fields(tmp_path, damage, needle):
    from yoco.dynamics_io import load_dynamics
    from yoco.dynamics_stats import load_score_input

    path = _compact(tmp_path)
    blob = torch.load(path, weights_only=True)
    damage(blob)
    torch.save(blob, path)
    for load in (load_dynamics, load_score_input):
        one_line(lambda: load(path), path, needle, REGEN)


def test_compact_log_cut_or_empty(tmp_path):
    from yoco.dynamics_io import load_dynamics

    path = _compact(tmp_path)
    assert len(load_dynamics(path)["training_dynamics"]) == len(records())
    short = cut(path, tmp_path / "short.pt")  # a cut torch file is named as one, not as a pickle
    one_line(lambda: load_dynamics(short), short, "truncated, damaged", REGEN)
    open(tmp_path / "empty.pt", "wb").close()
    one_line(lambda: load_dynamics(str(tmp_path / "empty.pt")), "empty.pt", "is empty (0 bytes)")


STATS_CASES = [
    (lambda b: b["targets"].__setitem__(0, 3), "field 'targets' holds 3 at 0, above 2"),
    (lambda b: _set(b, "targets", b["targets"][:3]), "field 'targets' has shape (3,), expected (4)"),
    (lambda b: b["logp_y"].__setitem__((0, 1), float("nan")), "field 'logp_y' holds 1 NaN/Inf values"),
    (lambda b: b["p_other"].__setitem__((0, 1), 1.5), "field 'p_other' holds 1.5 at 1, above 1"),
    (lambda b: _set(b, "correct", b["correct"].int()), "field 'correct' holds int32 values, expected true/false"),
    (lambda b: _set(b, "batch_ids", b["batch_ids"][:1]), "field 'batch_ids' has shape (1, 4), expected [E, "),
    (lambda b: b.pop("sq_other"), "field 'sq_other' is missing"),
]


@pytest.mark.parametrize("damage,needle", STATS_CASES, ids=[c[1][:40] for c in STATS_CASES])
def test_stats_file_fields(tmp_path, damage, needle):
    from yoco.dynamics_stats import load_score_input, save_stats

    path = str(tmp_path / "td-stats.pt")
    save_stats(path, "cifar10", records(), torch.tensor([0, 1, 2, 0]), num_samples=4)
    blob = torch.load(path, weights_only=True)
    damage(blob)
    torch.save(blob, path)
    one_line(lambda: load_score_input(path), path, needle, REGEN)


# ---- the dynamics run's own files: chunks, resume state, checkpoint ----------------------------------------------

def test_chunk_fields(tmp_path):
    from yoco.dynamics import load_chunk, save_chunk

    path = str(tmp_path / "chunk-0000.pt")
    save_chunk(path, records())
    assert len(load_chunk(path)) == len(records())
    good = torch.load(path, weights_only=True)
    fix = "start over without --resume"
    for damage, needle in ((lambda c: c.pop("meta"), "field 'meta' is missing"),
                           (lambda c: c["meta"].__setitem__((0, 2), 3), "field 'idx' has shape (8,), expected (9)"),
                           (lambda c: c["meta"].__setitem__((0, 0), -2), "field 'meta' holds -2"),
                           (lambda c: _set(c, "idx", c["idx"].float()), "field 'idx' holds float32"),
                           (lambda c: c["output"].__setitem__((0, 0), float("nan")), "field 'output' holds 1 NaN"),
                           (lambda c: _set(c, "output", c["output"][:5]), "field 'output' has shape (5, 3)")):
        c = copy.deepcopy(good)
        damage(c)
        torch.save(c, path)
        one_line(lambda: load_chunk(path), path, needle, fix)


def _trainer(tmp_path):
    from yoco.dynamics import run_signature

    args = types.SimpleNamespace(dataset="cifar10", condense_key="idc", custom_data_dir="cond", ipc=2, factor=2,
                                 network="convnet", epochs=4, batch_size=64, lr=0.01, dsa=True, dsa_strategy="x",
                                 mixup=True, mix_p=0.5, beta=1.0, seed=0, num_samples=80)
    st = {"epoch_done": 2, "trainer": {"model": {"w": torch.zeros(2)}, "optimizer": {}, "scheduler": {}},
          "rng": {"torch": torch.zeros(2, dtype=torch.uint8)}, "best": {"acc": 10.0, "epoch": 1},
          "chunks": ["chunk-0000.pt"], "signature": run_signature(args)}
    torch.save({}, tmp_path / "chunk-0000.pt")
    return types.SimpleNamespace(args=args, device=torch.device("cpu")), st


@pytest.mark.parametrize("damage,needle", [
    (lambda s: s["trainer"].pop("optimizer"), "field 'trainer.optimizer' is missing"),
    (lambda s: _set(s["best"], "acc", float("nan")), "field 'best.acc' is nan (not a finite number)"),
    (lambda s: _set(s, "chunks", ["chunk-0000.pt", 3]), "field 'chunks[1]' is 3, expected a string"),
    (lambda s: _set(s, "chunks", ["chunk-0001.pt"]), "field 'chunks[0]' is 'chunk-0001.pt', not a chunk-NNNN.pt file"),
    (lambda s: _set(s, "chunks", ["../x.pt"]), "field 'chunks[0]' is '../x.pt'"),
    (lambda s: _set(s, "epoch_done", True), "field 'epoch_done' is True, expected an integer"),
    (lambda s: _set(s, "epoch_done", 9), "field 'epoch_done' is 9, above 4"),
    (lambda s: _set(s, "rng", [1]), "field 'rng' is a list of 1 items, expected a mapping"),
])
def test_resume_state_fields(tmp_path, damage, needle):
    from yoco.dynamics import STATE, load_state

    trainer, st = _trainer(tmp_path)
    damage(st)
    torch.save(st, tmp_path / STATE)
    one_line(lambda: load_state(str(tmp_path), trainer), str(tmp_path / STATE), needle, "start over without --resume")


def test_checkpoint_fields(tmp_path):
    from yoco.dynamics import load_dynamics_model

    args = types.SimpleNamespace(network="convnet", nclass=10, nch=3, size=32, dataset="cifar10")
    path = str(tmp_path / "ckpt-last.pt")
    fix = "(or pass --ckpt)"
    for obj, needle in (({"epoch": 3}, "is not a dynamics checkpoint"),
                        ({"model_state_dict": {}, "epoch": 3}, "field 'model_state_dict' is empty"),
                        ({"model_state_dict": {"w": [1.0]}}, "field 'model_state_dict.w' is list, expected a tensor"),
                        ({"model_state_dict": {"w": torch.zeros(2)}, "epoch": "3"}, "field 'epoch' is '3'"),
                        ({"model_state_dict": {"w": torch.tensor([float("nan")])}},
                         "field 'model_state_dict.w' holds NaN/Inf values")):
        torch.save(obj, path)
        msg = one_line(lambda: load_dynamics_model(args, path, torch.device("cpu")), path, needle)
        assert fix in msg or "--ckpt" in msg


# ---- score files ------------------------------------------------------------------------------------------------

def scores(n=8, e=3):
    return {"kmeans_1": [0, 3, 5, 7], "targets": torch.arange(2).repeat_interleave(n // 2).int(),
            "forgetting": torch.zeros(n, dtype=torch.int32), "correct_num": torch.tensor([1, 5, 8]).int(),
            "loss_epoch": torch.rand(e), "el2n": torch.rand(n), "LBPE_top2": np.random.rand(n).astype(np.float32)}


SCORE_CASES = [
    (lambda d: d["el2n"].__setitem__(2, float("nan")), "field 'el2n' holds 1 NaN/Inf values of 8"),
    (lambda d: d["LBPE_top2"].__setitem__(0, np.inf), "field 'LBPE_top2' holds 1 NaN/Inf values of 8"),
    (lambda d: _set(d, "el2n", torch.rand(7)), "field 'el2n' has 7 entries, but 'targets' has 8 (one per decoded"),
    (lambda d: _set(d, "loss_epoch", torch.rand(4)), "field 'loss_epoch' has 4 entries, but 'correct_num' has 3"),
    (lambda d: _set(d, "kmeans_1", [0, 8]), "field 'kmeans_1[1]' is 8, above 7"),
    (lambda d: _set(d, "kmeans_1", [0, -1]), "field 'kmeans_1[1]' is -1, below 0"),
    (lambda d: _set(d, "kmeans_1", [0, True]), "field 'kmeans_1[1]' is True, expected an integer"),
    (lambda d: _set(d, "kmeans_1", [0, 1.5]), "field 'kmeans_1[1]' is 1.5, expected an integer"),
    (lambda d: _set(d, "imbalance_kmeans_2", "0,1"), "field 'imbalance_kmeans_2' is '0,1', expected a list"),
    (lambda d: _set(d, "kmeans_2", torch.tensor([1, 9])), "field 'kmeans_2' holds 9 at 1, above 7"),
    (lambda d: _set(d, "targets", torch.rand(8)), "field 'targets' holds float32 values, expected integers"),
    (lambda d: _set(d, "forgetting", -torch.ones(8, dtype=torch.int32)), "field 'forgetting' holds -1 at 0, below 0"),
    (lambda d: _set(d, "correct_num", torch.tensor([1, 9, 2])), "field 'correct_num' holds 9 correct predictions"),
    (lambda d: _set(d, "el2n", torch.rand(8, 1)), "field 'el2n' has 2 dimensions (8, 1), expected 1"),
    (lambda d: _set(d, "el2n", torch.ones(8, dtype=torch.bool)), "field 'el2n' holds bool values"),
    (lambda d: _set(d, "el2n", "high"), "field 'el2n' is str, expected a tensor or numpy array or list"),
    (lambda d: _set(d, "entropy", [0.1, None]), "field 'entropy[1]' is NoneType"),
    (lambda d: _set(d, 3, torch.rand(8)), "has the key 3 (int)"),
    (lambda d: d.clear(), "holds no scores"),
]


@pytest.mark.parametrize("damage,needle", SCORE_CASES, ids=[c[1][:40] for c in SCORE_CASES])
def test_score_file_fields(tmp_path, damage, needle):
    from yoco.scores import load_score_file

    d = scores()
    damage(d)
    path = dump(tmp_path / "data-score-ipc1-ep3.pickle", d)
    one_line(lambda: load_score_file(path), path, needle, "generate_importance_score.py", "--score_file")


def test_score_file_edges(tmp_path):
    from yoco.scores import load_score_file

    good = dump(tmp_path / "s.pickle", scores())
    assert sorted(load_score_file(good)) == sorted(scores())
    one_line(lambda: load_score_file(good, n=10), "field 'targets' has 8 entries, but 'the decoded set' has 10")
    open(tmp_path / "empty.pickle", "wb").close()
    one_line(lambda: load_score_file(str(tmp_path / "empty.pickle")), "empty.pickle", "is empty (0 bytes)")
    one_line(lambda: load_score_file(cut(good, tmp_path / "cut.pickle")), "cut.pickle", "truncated or damaged")
    one_line(lambda: load_score_file(dump(tmp_path / "list.pickle", [1, 2])), "list.pickle", "not a mapping")


# ---- the command lines that read these files ---------------------------------------------------------------------

FAST = ["--device", "cpu"]
TEST_PY = ["-d", "cifar10", "--data_dir", "data", "--epochs", "1", "--results_file", "r.json", "--ipc", "2",
           "--slct_ipc", "1", "--no_resnet", "--test_data_dir", "good.pt", *FAST]
GIS = ["-d", "cifar10", "--custom-data-dir", "cond", "--base-dir", "dyn", "--ckpt", "ckpt.pt", *FAST]


def _save(path, obj):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    torch.save(obj, path)


def _part(base, k, at, its=(5,), **cfg):
    """``<base>_{k}_phase{at}`` with its data files and args.yaml (niter 5, inner_loop 100: final iteration 5;
    ``cfg`` overrides its settings)."""
    import argparse

    from data.condensed import save_condensed
    from utils.files import save_config

    folder = f"{base}_{k}_phase{at}"
    y = torch.arange(at * k, (at + 1) * k).repeat_interleave(2)
    for it in its:
        save_condensed(os.path.join(folder, f"data_{it}.pt"), torch.rand(len(y), 3, 32, 32), y)
    doc = dict(dataset="cifar10", nclass=10, nch=3, size=32, ipc=2, factor=2, niter=5, inner_loop=100, lr_img=0.005,
               seed=0, nclass_sub=k, phase=at)
    doc.update(cfg)
    save_config(argparse.Namespace(**doc), os.path.join(folder, "args.yaml"))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Fake CIFAR-10, a condensed set (IPC 2, 80 decoded images at f = 2), a dynamics log and checkpoint of it written
    directly (no training), bad score, dynamics and checkpoint files, and class partitions good and bad."""
    from models import create_model
    from yoco.dynamics_io import save_reference_pickle

    w = tmp_path_factory.mktemp("inputs")
    cwd = os.getcwd()
    os.chdir(w)
    try:
        make_cifar("data", 10, n_train=40, n_test=20)
        y = torch.arange(10).repeat_interleave(2)
        x = torch.rand(20, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        _save("good.pt", [x, y])
        _save("cond/data.pt", [x, y])
        n = 80
        s = {"el2n": torch.rand(n), "targets": torch.arange(10).repeat_interleave(8).int(),
             "kmeans_1": list(range(0, 80, 2))}
        dump("scores_short.pickle", {**s, "el2n": torch.rand(n - 1)})
        dump("scores_index.pickle", {**s, "kmeans_1": [0, 80]})
        dump("scores_bool.pickle", {**s, "targets": torch.ones(n, dtype=torch.bool)})
        recs = records(n=n, c=10, epochs=1, b=40)
        save_reference_pickle("td.pickle", "cifar10", recs)
        bad = copy.deepcopy(recs)
        bad[1]["idx"] = bad[1]["idx"].float()
        save_reference_pickle("td_float_idx.pickle", "cifar10", bad)
        bad = copy.deepcopy(recs)
        bad[0]["output"][3, 1] = float("nan")
        save_reference_pickle("td_nan.pickle", "cifar10", bad)
        open("td_empty.pickle", "wb").close()
        model = create_model("convnet", nclass=10, nch=3, size=32, depth=3, norm_type="instance", dataset="cifar10")
        weights = model.state_dict()
        next(iter(weights.values())).view(-1)[0] = float("nan")
        _save("ckpt_nan.pt", {"model_state_dict": weights, "epoch": 0})
        # partitions: 2 of 5 classes (cifar10), made with --nclass_sub 5
        for p in (0, 1):
            _part("parts", 5, p)
            _part("zero", 5, p)
            _part("yaml", 5, p, **({"niter": "five"} if p == 1 else {}))
            _part("svhn", 5, p, dataset="svhn")
        open("zero_5_phase1/data_5.pt", "wb").close()  # a 0-byte part file
        _part("moved", 5, 0)
        _part("moved", 5, 1, phase=0)  # a copy of phase 0's folder
        _save("cut_5_phase0/data.pt", [x[:10], y[:10]])  # released parts: no args.yaml
        _save("cut_5_phase1/data.pt", [x[10:], y[10:]])
        with open("cut_5_phase1/data.pt", "rb") as f:
            data = f.read()
        with open("cut_5_phase1/data.pt", "wb") as f:
            f.write(data[:len(data) // 2])
        os.makedirs("other_out")
        with open("other_out/manifest.json", "w") as f:
            json.dump({"format": "mdc-merged-partitions", "version": 1, "base": "x", "data": "data.pt", "nclass": "10"}, f)
    finally:
        os.chdir(cwd)
    return w


CLI_CASES = [
    # score files read by test.py's pruning step
    ("test.py", [*TEST_PY, "--pruning_key", "el2n", "--score_file", "scores_short.pickle"],
     "scores_short.pickle: field 'el2n' has 79 entries, but 'targets' has 80"),
    ("test.py", [*TEST_PY, "--pruning_key", "ssp_balance", "--score_file", "scores_index.pickle"],
     "scores_index.pickle: field 'kmeans_1[1]' is 80, above 79"),
    ("test.py", [*TEST_PY, "--pruning_key", "el2n", "--score_file", "scores_bool.pickle"],
     "scores_bool.pickle: field 'targets' holds bool values, expected integers"),
    # dynamics logs and the checkpoint read by the score generator
    ("generate_importance_score.py", [*GIS, "--td-file", "td_float_idx.pickle"],
     "td_float_idx.pickle: record 1: field 'idx' holds float32 values, expected integers"),
    ("generate_importance_score.py", [*GIS, "--td-file", "td_nan.pickle"],
     "td_nan.pickle: record 0: field 'output' holds 1 NaN/Inf values of 400"),
    ("generate_importance_score.py", [*GIS, "--td-file", "td_empty.pickle"], "td_empty.pickle: this training-dynamics"),
    ("generate_importance_score.py", [*GIS[:-4], "--td-file", "td.pickle", "--ckpt", "ckpt_nan.pt", *FAST],
     "ckpt_nan.pt: field 'model_state_dict."),
    # class partitions: the settings that decide them, their args.yaml, their data files, the merged folder
    ("data.partitions", ["parts", "--nclass_sub", "5", "--nclass", "20"],
     "parts_5_phase0/args.yaml: field 'nclass' is 10: the partitions of parts split the 10 classes of cifar10 into "
     "blocks of 5, not the 20 classes of this command (the partitions 2..3 it would need cannot exist); pass "
     "--nclass 10"),
    ("data.partitions", ["parts", "--nclass_sub", "2", "--nclass", "10"],
     "parts has no partition of --nclass_sub 2 (parts_2_phase0 is missing) but has partitions of --nclass_sub 5"),
    ("data.partitions", ["zero", "--nclass_sub", "5", "--nclass", "10"], "zero_5_phase1/data_5.pt: it is empty"),
    ("data.partitions", ["cut", "--nclass_sub", "5", "--nclass", "10"], "cut_5_phase1/data.pt: the file is truncated"),
    ("data.partitions", ["yaml", "--nclass_sub", "5", "--nclass", "10"],
     "yaml_5_phase1/args.yaml: field 'niter' is 'five', expected an integer"),
    ("data.partitions", ["moved", "--nclass_sub", "5", "--nclass", "10"],
     "moved_5_phase1/args.yaml: field 'phase' is 0, but the folder moved_5_phase1 is phase 1"),
    ("data.partitions", ["parts", "--nclass_sub", "5", "--nclass", "10", "--out", "other_out"],
     "other_out/manifest.json: field 'nclass' is '10', expected an integer"),
    ("condense_reg_mp.py", ["-d", "cifar10", "--nclass_sub", "5", "--merge", "--save_dir", "zero", "--ipc", "2", "--niter", "5",
                            "--inner_loop", "100", *FAST], "zero_5_phase1/data_5.pt: it is empty"),
    ("condense_reg_mp.py", ["-d", "cifar10", "--nclass_sub", "5", "--merge", "--save_dir", "svhn", "--ipc", "2", "--niter", "5",
                            "--inner_loop", "100", *FAST],
     "svhn_5_phase0/args.yaml: field 'dataset' is 'svhn', not the 'cifar10' of this command"),
]


@pytest.mark.parametrize("script,args,needle", CLI_CASES, ids=[f"{c[0]}:{c[2][:50]}" for c in CLI_CASES])
def test_bad_inputs_refused_through_the_command_line(world, script, args, needle):
    line, foreign = refused_quoting(world, script, args, needle)
    if not foreign:  # advice that names only the script's own options: the strict check of test_failures.py too
        refused(world, script, args, needle)


def test_partition_advice_quoting_other_commands(world, tmp_path):
    """Advice that quotes condense_reg_mp.py's command line names only that script's options there."""
    line, _ = refused_quoting(world, "data.partitions", ["missing", "--nclass_sub", "5", "--nclass", "10"],
                              "are not condensed")
    assert "`python condense_reg_mp.py ... --nclass_sub 5 --phase P`" in line
    _part(str(tmp_path / "half"), 5, 0)
    _part(str(tmp_path / "half"), 5, 1, its=(3,))
    line, _ = refused_quoting(tmp_path, "data.partitions", ["half", "--nclass_sub", "5", "--nclass", "10"],
                              "different iterations")
    assert "`condense_reg_mp.py ... --nclass_sub 5 --phase 1 --resume`" in line


def test_merge_writes_a_manifest_its_reader_accepts(world, tmp_path):
    """The merged folder's manifest.json passes its reader, and a merge into it again is allowed; a merge of other
    partitions into it is refused."""
    import shutil

    from data.partitions import merge_parts, read_manifest

    for name in ("parts_5_phase0", "parts_5_phase1", "svhn_5_phase0", "svhn_5_phase1"):
        shutil.copytree(world / name, tmp_path / name)
    out = merge_parts(str(tmp_path / "parts"), 5, 10, log=lambda s: None, out=str(tmp_path / "m"))
    man = read_manifest(out)
    assert man["nclass"] == 10 and [p["phase"] for p in man["parts"]] == [0, 1]
    merge_parts(str(tmp_path / "parts"), 5, 10, log=lambda s: None, out=out)
    one_line(lambda: merge_parts(str(tmp_path / "svhn"), 5, 10, log=lambda s: None, out=out),
             "holds the merged set of other partitions", "pass another --out")
    with open(os.path.join(out, "manifest.json")) as f:
        doc = json.load(f)
    doc["parts"][1]["classes"] = [0, 4]
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(doc, f)
    one_line(lambda: read_manifest(out), "manifest.json: field 'parts[1].classes' is [0, 4], expected [5, 9]",
             "delete")
