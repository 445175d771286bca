"""YOCO pipeline (docs/yoco.md): get_training_dynamics.py -> generate_importance_score.py -> test.py
--slct_ipc, as subprocesses on fake CIFAR-10 with tiny budgets; reference-layout round trips; bad input."""
import importlib.util
import json
import os
import pickle

import pytest
import torch

from conftest import ROOT, run_script
from data.condensed import save_condensed
from yoco.pruning import IDC_TAG_CIFAR

C, IPC_F, IPC_T = 10, 2, 1
FAST = ["--device", "cpu"]
SCORE_KEYS = {"kmeans_1", "kmeans_2", "kmeans_5", "kmeans_10", "imbalance_kmeans_1", "imbalance_kmeans_2",
              "imbalance_kmeans_5", "imbalance_kmeans_10", "entropy", "loss", "targets", "correctness", "forgetting",
              "last_correctness", "accumulated_margin", "last_correct_count", "correct_num", "loss_epoch",
              "LBPE_0_10", "el2n", "LBPE_top2"}


def condensed(seed=0, ipc=IPC_F):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(C * ipc, 3, 32, 32, generator=g), torch.arange(C).repeat_interleave(ipc)


def check_td_layout(path, n, c, epochs):
    """Our dynamics pickle in the reference layout (reference he-y/you-only-condense-once/get_training_dynamics.py;
    docs/algorithms.md#the-dynamics-run), read with plain pickle."""
    with open(path, "rb") as f:
        d = pickle.load(f)
    assert set(d) == {"data-name", "training_dynamics"} and d["data-name"] == "cifar10"
    recs = d["training_dynamics"]
    iters = -(-n // 64)
    assert len(recs) == epochs * iters
    for k, r in enumerate(recs):
        assert set(r) == {"epoch", "iteration", "idx", "output"}
        assert (r["epoch"], r["iteration"]) == (k // iters, k % iters)
        assert r["idx"].dtype == torch.int64 and r["output"].dtype == torch.float16
        assert r["idx"].untyped_storage().nbytes() == 8 * r["idx"].numel()  # no shared epoch permutation
        assert r["output"].shape == (r["idx"].numel(), c)
        assert torch.allclose(r["output"].float().exp().sum(1), torch.ones(r["idx"].numel()), atol=2e-2)
    for e in range(epochs):  # every sample exactly once per epoch
        idx = torch.cat([r["idx"] for r in recs if r["epoch"] == e])
        assert torch.equal(idx.sort().values, torch.arange(n))


def check_scores(path, n):
    with open(path, "rb") as f:
        s = pickle.load(f)
    assert SCORE_KEYS <= set(s)
    assert s["el2n"] is s["LBPE_0_10"]  # the same tensor object, as the reference (YOCO reference
    # generate_importance_score.py; docs/algorithms.md#scores)
    assert s["targets"].dtype == torch.int32 and s["forgetting"].dtype == torch.int32
    assert s["LBPE_top2"].shape == (n,) and s["LBPE_top2"].dtype == torch.float32
    assert all(isinstance(i, int) for i in s["kmeans_1"]) and len(s["kmeans_1"]) == C * (n // (C * IPC_F))
    return s


def last_record(path):
    with open(path) as f:
        return json.load(f)[-1]


@pytest.mark.slow
def test_pipeline_idc_default_paths(fake_root, tmp_path):
    """idc, f = 2, every path by default (YOCO reference argument.py; docs/yoco.md; docs/algorithms.md#the-dynamics-run,
    #pruning-key-resolution), relative to the working folder."""
    folder = tmp_path / "raid" / "condensed_img" / "idc" / "cifar10" / IDC_TAG_CIFAR.format(ipc=IPC_F)
    save_condensed(str(folder / "data.pt"), *condensed())
    run_script("get_training_dynamics.py", "-d", "cifar10", "--ipc", IPC_F, "--epochs", 3, "--data-dir", fake_root,
               *FAST, cwd=tmp_path)
    out = tmp_path / "raid" / "reproduce_3" / "dynamics_and_scores" / "idc" / "cifar10" / f"ipc{IPC_F}"
    n = C * IPC_F * 4
    check_td_layout(out / f"td-ipc{IPC_F}.pickle", n, C, 3)
    for ck in ("ckpt-last.pt", "ckpt-best.pt"):
        st = torch.load(out / ck, weights_only=True)
        assert set(st) == {"model_state_dict", "epoch"}
    assert torch.load(out / "ckpt-last.pt", weights_only=True)["epoch"] == 2
    log = (out / f"log-train-ipc{IPC_F}.log").read_text()
    assert "epoch 0:" in log and "epoch 2:" in log and not (out / "resume").exists()
    run_script("generate_importance_score.py", "-d", "cifar10", "--ipc", IPC_F, "--stop_epoch", 3, "--topk", 2,
               *FAST, cwd=tmp_path)
    check_scores(out / f"data-score-ipc{IPC_F}-ep3.pickle", n)
    sub = tmp_path / "sub.pt"
    run_script("test.py", "-d", "cifar10", "--ipc", IPC_F, "--slct_ipc", IPC_T, "--pruning_key", "yoco",
               "--stop_epoch", 3, "--topk", 2, "--epochs", 1, "--no_resnet", "--data_dir", fake_root,
               "--save_subset", sub, *FAST, cwd=tmp_path)
    rec = last_record(tmp_path / "raid" / "log_reproduce_3" / "idc" / "cifar10" / IDC_TAG_CIFAR.format(ipc=IPC_F)
                      / "test_results.json")
    assert rec["n_train"] == C * IPC_T * 4 and rec["args"]["factor"] == 2
    assert rec["args"]["pruning"]["score_key"] == "LBPE_top2" and rec["args"]["pruning"]["balance"]
    assert rec["args"]["score_file"].endswith(f"ipc{IPC_F}/data-score-ipc{IPC_F}-ep3.pickle")
    x, y = torch.load(sub, weights_only=True)  # --save_subset exports the pruned (decoded) set
    assert x.shape == (C * IPC_T * 4, 3, 32, 32) and torch.equal(y, torch.arange(C).repeat_interleave(4))


def test_dsa_format_loads_at_factor_1(tmp_path):
    from get_training_dynamics import get_args_parser
    from yoco.dynamics import data_settings, load_condensed_set, resolve_paths

    x, y = condensed(seed=1)
    torch.save({"data": [[x, y]]}, tmp_path / "data.pt")  # DSA result dict, first experiment
    args = get_args_parser().parse_args(["--condense_key", "dsa", "--custom-data-dir", str(tmp_path)])
    resolve_paths(data_settings(args))
    dx, dy = load_condensed_set(args)
    assert args.factor == 1 and args.ipc == IPC_F and torch.equal(dx, x) and torch.equal(dy, y)
    assert args.base_dir == os.path.join("raid", "reproduce_3", "dynamics_and_scores", "dsa", "cifar10")


@pytest.mark.slow
def test_pipeline_single_formation(fake_root, tmp_path, key="kip"):
    """f = 1 key in its own file format (KIP: NHWC + one-hot); compact log only; explicit folders."""
    x, y = condensed(seed=1)
    data = tmp_path / key / "data.pt"
    data.parent.mkdir()
    torch.save([x.permute(0, 2, 3, 1), torch.nn.functional.one_hot(y, C).float()], data)
    base = tmp_path / "dyn"
    common = ["-d", "cifar10", "--condense_key", key, "--custom-data-dir", data.parent, "--base-dir", base, *FAST]
    run_script("get_training_dynamics.py", *common, "--epochs", 3, "--data-dir", fake_root, "--compact", "only")
    out = base / f"ipc{IPC_F}"
    assert (out / f"td-ipc{IPC_F}.pt").is_file() and not (out / f"td-ipc{IPC_F}.pickle").exists()
    run_script("generate_importance_score.py", *common, "--stop_epoch", 3, "--topk", 2)
    check_scores(out / f"data-score-ipc{IPC_F}-ep3.pickle", C * IPC_F)
    res = tmp_path / "r.json"
    run_script("test.py", "-d", "cifar10", "--condense_key", key, "--ipc", IPC_F, "--slct_ipc", IPC_T,
               "--test_data_dir", data.parent, "--score_file", out / f"data-score-ipc{IPC_F}-ep3.pickle",
               "--pruning_key", "el2n_easy_balance", "--topk", 2, "--epochs", 1, "--no_resnet",
               "--data_dir", fake_root, "--results_file", res, *FAST)
    rec = last_record(res)
    assert rec["n_train"] == C * IPC_T and rec["args"]["factor"] == 1
    pr = rec["args"]["pruning"]
    assert (pr["score_key"], pr["balance"], pr["use_hard"], pr["n_selected"]) == ("el2n", True, False, C * IPC_T)


def test_pipeline_compact_stats(fake_root, tmp_path):
    """--compact stats: only td-ipc{IPC}-stats.pt is written, found by the generator by default, and drives
    test.py --slct_ipc (in-process, 2 epochs)."""
    from generate_importance_score import get_args_parser as score_parser, main as score_main
    from get_training_dynamics import get_args_parser as dyn_parser, main as dyn_main
    from cli.arguments import cli

    data = tmp_path / "set"
    save_condensed(str(data / "data.pt"), *condensed(seed=6))
    base, n = tmp_path / "dyn", C * IPC_F * 4
    common = ["-d", "cifar10", "--custom-data-dir", str(data), "--base-dir", str(base), *FAST]
    dyn_main(dyn_parser().parse_args(common + ["--epochs", "2", "--data-dir", fake_root, "--compact", "stats"]))
    out = base / f"ipc{IPC_F}"
    assert sorted(p.name for p in out.glob("td-*")) == [f"td-ipc{IPC_F}-stats.pt"]
    st = torch.load(out / f"td-ipc{IPC_F}-stats.pt", weights_only=True)
    assert st["logp_y"].shape == (2, n) and torch.equal(st["targets"], torch.arange(C).repeat_interleave(IPC_F * 4))
    score_main(score_parser().parse_args(common + ["--stop_epoch", "2", "--topk", "2"]))
    s = check_scores(out / f"data-score-ipc{IPC_F}-ep2.pickle", n)
    assert s["correct_num"].shape == (2,) and s["loss_epoch"].shape == (2,)
    mod, sub = _test_py(), tmp_path / "sub.pt"
    rec = cli(mod.main, mod.get_args_parser,
              ["-d", "cifar10", "--ipc", str(IPC_F), "--slct_ipc", str(IPC_T), "--test_data_dir", str(data),
               "--score_file", str(out / f"data-score-ipc{IPC_F}-ep2.pickle"), "--pruning_key", "yoco", "--topk", "2",
               "--epochs", "1", "--no_resnet", "--data_dir", fake_root, "--results_file", str(tmp_path / "r.json"),
               "--save_subset", str(sub), *FAST])
    assert rec["n_train"] == C * IPC_T * 4 and rec["args"]["pruning"]["score_key"] == "LBPE_top2"
    from data.condensed import decode

    dec, _ = decode(*condensed(seed=6), 2, "single", C)
    lbpe = s["LBPE_top2"]  # yoco keeps, per class, the lowest LBPE_top2
    want = torch.cat([c * 8 + lbpe[c * 8:(c + 1) * 8].argsort()[:4] for c in range(C)])
    assert torch.equal(torch.load(sub, weights_only=True)[0], dec[want])


def test_resume_is_exact(fake_root, tmp_path):
    """An interrupted dynamics run continued with --resume gives the same log and model (in-process)."""
    from get_training_dynamics import get_args_parser, main

    data = tmp_path / "set"
    save_condensed(str(data / "data.pt"), *condensed(seed=2))
    common = ["-d", "cifar10", "--custom-data-dir", str(data), "--epochs", "3", "--data-dir", fake_root,
              "--seed", "5", "--test-period", "2", *FAST]

    def run(*extra):
        return main(get_args_parser().parse_args(common + list(extra)))

    assert run("--base-dir", str(tmp_path / "a"))["complete"]
    assert not run("--base-dir", str(tmp_path / "b"), "--stop-after-epochs", "2")["complete"]
    assert (tmp_path / "b" / "ipc2" / "resume" / "state.pt").is_file()
    assert not (tmp_path / "b" / "ipc2" / "td-ipc2.pickle").exists()
    assert run("--base-dir", str(tmp_path / "b"), "--resume")["complete"]
    with open(tmp_path / "a" / "ipc2" / "td-ipc2.pickle", "rb") as f:
        a = pickle.load(f)["training_dynamics"]
    with open(tmp_path / "b" / "ipc2" / "td-ipc2.pickle", "rb") as f:
        b = pickle.load(f)["training_dynamics"]
    assert len(a) == len(b) == 6
    for r, s in zip(a, b):
        assert torch.equal(r["idx"], s["idx"]) and torch.equal(r["output"], s["output"])
    assert not (tmp_path / "b" / "ipc2" / "resume").exists()


# ---------------------------------------------------------------------------------------------------
# reference-layout files written with plain pickle


@pytest.mark.slow
def test_reference_files_round_trip(fake_root, tmp_path):
    """A reference dynamics pickle + ckpt are scored by our generator; a reference score pickle drives
    test.py's selection (YOCO reference get_training_dynamics.py; docs/algorithms.md#the-dynamics-run, #score-file,
    #selection-rules)."""
    from models import create_model

    x, y = condensed(seed=3)
    data = tmp_path / "set"
    save_condensed(str(data / "data.pt"), x, y)
    n, out = C * IPC_F * 4, tmp_path / "dyn" / "ipc2"
    out.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    recs = []
    for e in range(4):
        perm = torch.randperm(n, generator=g)
        for it, s in enumerate(range(0, n, 64)):
            idx = perm[s:s + 64]
            logits = torch.randn(len(idx), C, generator=g)
            recs.append({"epoch": e, "iteration": it, "idx": idx, "output": logits.log_softmax(1).half()})
    with open(out / "td-ipc2.pickle", "wb") as f:
        pickle.dump({"data-name": "cifar10", "training_dynamics": recs}, f)
    model = create_model("convnet", nclass=C, nch=3, size=32, depth=3)
    torch.save({"model_state_dict": model.state_dict(), "epoch": 3}, out / "ckpt-last.pt")
    from generate_importance_score import get_args_parser, main

    main(get_args_parser().parse_args(["-d", "cifar10", "--custom-data-dir", str(data), "--base-dir",
                                       str(tmp_path / "dyn"), "--stop_epoch", "4", "--topk", "2", *FAST]))
    s = check_scores(out / "data-score-ipc2-ep4.pickle", n)
    p = torch.stack([torch.zeros(n, C)] * 4)
    for r in recs:
        p[r["epoch"], r["idx"]] = r["output"].float().exp()
    y_dec = torch.arange(C).repeat_interleave(IPC_F * 4)
    err = (torch.nn.functional.one_hot(y_dec, C) - p).norm(dim=2)  # [E, N]
    assert torch.allclose(s["el2n"], err.sum(0), atol=1e-4)  # epochs 0..3 (< 10 logged)
    correct = (p.argmax(2) == y_dec).sum(1)
    top = torch.sort(correct, descending=True, stable=True).indices[:2]
    assert torch.allclose(s["LBPE_top2"], err[top].sum(0), atol=1e-4)

    # a reference-layout score file: yoco keeps, per class, the m lowest LBPE_top10
    lbpe = torch.rand(n, generator=g)
    ref = {"LBPE_top10": lbpe, "targets": y_dec.to(torch.int32)}
    with open(tmp_path / "ref-score.pickle", "wb") as f:
        pickle.dump(ref, f)
    sub = tmp_path / "sub.pt"
    run_script("test.py", "-d", "cifar10", "--ipc", IPC_F, "--slct_ipc", IPC_T, "--test_data_dir", data,
               "--score_file", tmp_path / "ref-score.pickle", "--epochs", 1, "--no_resnet", "--data_dir", fake_root,
               "--results_file", tmp_path / "r.json", "--save_subset", sub, *FAST)
    from data.condensed import decode

    dec, _ = decode(x, y, 2, "single", C)
    want = torch.cat([c * 8 + lbpe[c * 8:(c + 1) * 8].argsort()[:4] for c in range(C)])
    got = torch.load(sub, weights_only=True)[0]
    assert torch.equal(got, dec[want])


# ---------------------------------------------------------------------------------------------------
# bad input: one-line error, exit status 2


def _test_py():
    spec = importlib.util.spec_from_file_location("yoco_test_script", os.path.join(ROOT, "test.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def bad_setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad")
    save_condensed(str(tmp / "set" / "data.pt"), *condensed(seed=4))
    with open(tmp / "short.pickle", "wb") as f:
        pickle.dump({"LBPE_top10": torch.rand(10), "el2n": torch.rand(10)}, f)
    return tmp


@pytest.mark.parametrize("extra,needle", [
    (["--score_file", "{tmp}/short.pickle"], "N=80"),
    (["--pruning_key", "bogus", "--score_file", "{tmp}/short.pickle"], "unknown --pruning_key"),
    (["--slct_ipc", "2"], "smaller than --ipc"),
    (["--pruning_key", "ccs", "--score_file", "{tmp}/short.pickle"], "CCS table"),
    (["--score_file", "{tmp}/missing.pickle"], "not found"),
])
def test_bad_input(bad_setup, fake_root, capsys, extra, needle):
    from cli.arguments import cli

    mod = _test_py()
    argv = ["-d", "cifar10", "--ipc", "2", "--test_data_dir", str(bad_setup / "set"), "--epochs", "1",
            "--no_resnet", "--data_dir", fake_root, "--device", "cpu", "--results_file", str(bad_setup / "r.json")]
    argv += [a.format(tmp=bad_setup) for a in extra]
    if "--slct_ipc" not in extra:
        argv += ["--slct_ipc", "1"]
    with pytest.raises(SystemExit) as e:
        cli(mod.main, mod.get_args_parser, argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and needle in err, err
    assert not (bad_setup / "r.json").exists()


@pytest.mark.slow
def test_bad_input_subprocess(bad_setup, fake_root):
    p = run_script("test.py", "-d", "cifar10", "--ipc", 2, "--slct_ipc", 1, "--test_data_dir", bad_setup / "set",
                   "--score_file", bad_setup / "short.pickle", "--data_dir", fake_root, *FAST, check=False)
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0 and p.stderr.startswith("error: ")


def test_dynamics_bad_input(tmp_path, capsys, monkeypatch):
    from get_training_dynamics import get_args_parser, main
    from cli.arguments import cli

    monkeypatch.chdir(tmp_path)
    save_condensed(str(tmp_path / "s" / "data.pt"), *condensed(seed=5))
    (tmp_path / "dyn" / "ipc2").mkdir(parents=True)
    (tmp_path / "dyn" / "ipc2" / "args.yaml").write_text("epochs: 3\n")  # another run's dynamics
    for argv, needle in ((["--ipc", "10"], "not found"),  # no default folder here
                         (["--ipc", "3", "--custom-data-dir", "s"], "pass --ipc 2"),
                         (["--condense_key", "kip", "--ipc", "2"], "CIFAR-10 IPC 10 only"),
                         (["--custom-data-dir", "s", "--base-dir", "dyn"], "holds another dynamics run"),
                         (["--custom-data-dir", "s", "--base-dir", "s"], "is s (--custom-data-dir)")):
        with pytest.raises(SystemExit) as e:
            cli(main, get_args_parser, argv + ["--device", "cpu", "--data-dir", str(tmp_path)])
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and err.startswith("error: ") and needle in err, err


@pytest.mark.slow
def test_dynamics_under_bf16(fake_root, tmp_path):
    """--precision bf16 (training/precision.py): the dynamics log keeps its layout and float32 log-probabilities."""
    data = tmp_path / "idc" / "data.pt"
    save_condensed(str(data), *condensed(seed=2))
    base = tmp_path / "dyn"
    run_script("get_training_dynamics.py", "-d", "cifar10", "--condense_key", "idc", "--custom-data-dir", data.parent,
               "--base-dir", base, *FAST, "--epochs", 2, "--data-dir", fake_root, "--precision", "bf16")
    check_td_layout(base / f"ipc{IPC_F}" / f"td-ipc{IPC_F}.pickle", C * IPC_F * 4, C, 2)
