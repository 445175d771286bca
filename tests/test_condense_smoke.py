"""Subprocess smoke runs of condense_reg.py / condense.py / condense_reg_mp.py on fake CIFAR-10 (CPU,
tiny budgets: niter 1 with inner_loop 5 gives 20 outer iterations, cut short by --stop_after), then
test.py on their output; resume bit-identity in --deterministic mode."""
import json
import os

import pytest
import torch

from conftest import run_cli, run_script
from fakedata import make_cifar


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """Fake CIFAR-10 with 30 training images per class (mix init of ipc 3, f 2 needs 12)."""
    r = str(tmp_path_factory.mktemp("cifar30"))
    make_cifar(r, 10, n_train=300, n_test=100)
    return r


def common(root):
    return ["-d", "cifar10", "--data_dir", root, "--device", "cpu", "--width", "0.125", "--niter", "1",
            "--inner_loop", "5", "--n_data", "16", "--batch_real", "8"]


def metrics(folder):
    with open(os.path.join(folder, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def load(path):
    return torch.load(path, weights_only=True)


@pytest.mark.slow
def test_mdc_f2_then_test_py(root, tmp_path):
    out = tmp_path / "mdc"
    run_script("condense_reg.py", *common(root), "--ipc", "3", "-f", "2", "--adaptive_reg", "True",
               "--adaptive_period", "1", "--stop_after", "3", "--eval_epochs", "1", "--save_dir", out)
    for name in ("data_1.pt", "data_3.pt", "regularizer_3.json", "checkpoint.pt", "it.pt", "args.yaml",
                 "log.txt", "init.png", "latest.png"):
        assert (out / name).exists(), name
    x, y = load(out / "data_3.pt")
    assert x.shape == (30, 3, 32, 32) and x.dtype == torch.float32
    assert y.tolist() == [c for c in range(10) for _ in range(3)]
    recs = metrics(out)
    assert [r["it"] for r in recs if r["type"] == "mls"] == [1, 2, 3]
    assert [r["mls"] for r in recs if r["type"] == "mls"][0] == 1  # first MLS = 1 (reference
    # he-y/Multisize-Dataset-Condensation/reg_ipcx.py, select_reg_ipc; docs/algorithms.md#mls-selection)
    evals = {(r["it"], r["subset"]) for r in recs if r["type"] == "eval"}
    assert {(0, "ipc3"), (0, "ipc1"), (0, "ipc2"), (3, "ipc3"), (3, "ipc1")} <= evals
    assert all(r["type"] != "loss" or "frozen" in r for r in recs)
    regs = json.loads((out / "regularizer_3.json").read_text())
    assert len(regs) == 10 and regs[0]["selections"][0] == [1, 1]
    run_script("test.py", "-d", "cifar10", "-f", "2", "--ipc", "3", "--ipcy", "2", "--test_type", "cx_cy",
               "--test_data_dir", out, "--data_dir", root, "--epochs", "2", "--device", "cpu", "--width", "0.125")
    rec = json.loads((out / "test_results.json").read_text())[-1]
    assert rec["n_train"] == 10 * 2 * 4 and rec["source"] == str(out)


@pytest.mark.slow
def test_mdc_f1_and_noreg_default_folder(root, tmp_path):
    # f = 1 with MDC (the reference's freeze crashed here, mdc 2 in docs/reference-differences.md#bugs-fixed)
    out = tmp_path / "f1"
    run_script("condense_reg.py", *common(root), "--ipc", "3", "-f", "1", "--adaptive_reg", "True",
               "--adaptive_period", "1", "--stop_after", "3", "--eval_during", "False", "--save_dir", out)
    assert load(out / "data_3.pt")[0].shape == (30, 3, 32, 32)
    # Baseline C (no MDC): default folder with the _noreg suffix, no regulariser files (mdc 1 in
    # docs/reference-differences.md#bugs-fixed)
    run_script("condense_reg.py", *common(root), "--ipc", "2", "--stop_after", "2", "--eval_during", "False",
               cwd=tmp_path)
    folder = tmp_path / "raid" / "results" / "cifar10" / (
        "conv3in_w0.125_grad_l1_nd16_inloop5_cut_niter1_factor1_lr0.005_b_real8_random_ipc2_noreg")
    assert (folder / "data_2.pt").exists() and not list(folder.glob("regularizer_*"))


@pytest.mark.slow
def test_dream_mdc(root, tmp_path):
    out = tmp_path / "dream"
    run_script("condense_reg.py", *common(root), "-s", "dream", "--interval", "2", "--ipc", "2", "-f", "2",
               "--adaptive_reg", "True", "--adaptive_period", "1", "--stop_after", "2", "--eval_during", "False",
               "--save_dir", out)
    x, _ = load(out / "data_2.pt")
    assert x.shape == (20, 3, 32, 32) and torch.isfinite(x).all()


@pytest.mark.slow
def test_condense_py_idc_folder_then_test_py(root, tmp_path):
    run_script("condense.py", *common(root), "--ipc", "2", "-f", "2", "--stop_after", "1", "--eval_during", "False",
               cwd=tmp_path)
    base = tmp_path / "raid" / "condensed_img" / "idc" / "cifar10"
    (folder,) = list(base.iterdir())
    assert folder.name.endswith("_factor2_lr0.005_b_real8_mix_ipc2")  # no _noreg under idc/
    a, b = load(folder / "data.pt"), load(folder / "data_1.pt")
    assert torch.equal(a[0], b[0])
    run_script("test.py", "-d", "cifar10", "-f", "2", "--ipc", "2", "--test_data_dir", folder, "--data_dir", root,
               "--epochs", "2", "--device", "cpu", "--results_file", tmp_path / "r.json")
    p = run_script("condense.py", *common(root), "--ipc", "2", "--adaptive_reg", "True", check=False, cwd=tmp_path)
    assert p.returncode == 2 and "condense_reg.py" in p.stderr


@pytest.mark.slow
def test_mp_partition(root, tmp_path):
    run_script("condense_reg_mp.py", *common(root), "--ipc", "2", "-f", "2", "--adaptive_reg", "True",
               "--adaptive_period", "1", "--nclass_sub", "5", "--phase", "1", "--stop_after", "1", "--early", "1",
               cwd=tmp_path)
    (folder,) = list((tmp_path / "raid" / "results" / "cifar10").iterdir())
    assert folder.name.endswith("_ely1_nd16_inloop5_cut_niter1_factor2_lr0.005_b_real8_mix_ipc2_5_phase1")
    x, y = load(folder / "data_1.pt")
    assert x.shape == (10, 3, 32, 32) and y.tolist() == [5, 5, 6, 6, 7, 7, 8, 8, 9, 9]


@pytest.mark.slow
def test_resume_is_bit_identical(root, tmp_path):
    flags = [*common(root), "--ipc", "3", "-f", "2", "--adaptive_reg", "True", "--adaptive_period", "2",
             "--fix_iter", "3", "--deterministic", "True", "--eval_during", "False"]
    full, part = tmp_path / "full", tmp_path / "part"
    run_script("condense_reg.py", *flags, "--stop_after", "5", "--save_dir", full)
    run_script("condense_reg.py", *flags, "--stop_after", "2", "--save_dir", part)
    assert load(part / "checkpoint.pt")["it"] == 2
    p = run_script("condense_reg.py", *flags, "--lr_img", "0.01", "--resume", "--save_dir", part, check=False)
    assert p.returncode == 2 and "cannot resume" in p.stderr and "lr_img" in p.stderr
    run_script("condense_reg.py", *flags, "--stop_after", "5", "--resume", "--save_dir", part)
    a, b = load(full / "data_5.pt"), load(part / "data_5.pt")
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    ca, cb = load(full / "checkpoint.pt"), load(part / "checkpoint.pt")
    assert torch.equal(ca["opt_img"]["state"][0]["momentum_buffer"], cb["opt_img"]["state"][0]["momentum_buffer"])
    assert ca["regs"] == cb["regs"]
    assert [r for r in metrics(full) if r["type"] == "mls"] == [r for r in metrics(part) if r["type"] == "mls"]


def test_bad_input_messages(root, tmp_path):
    p = run_cli("condense_reg.py", *common(root), "--ipc", "1", "--adaptive_reg", "True", check=False)
    assert p.returncode == 2 and p.stderr.startswith("error:") and "ipc >= 2" in p.stderr
    p = run_cli("condense_reg.py", *common(root), "--ipc", "2", "--lr_img", "nan", check=False)
    assert p.returncode == 2 and "lr_img" in p.stderr
