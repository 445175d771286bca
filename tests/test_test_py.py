"""Smoke tests of test.py as a subprocess on fake datasets (tiny budgets, CPU), and its bad inputs."""
import json
import os

import pytest
import torch

from conftest import run_script
from data.condensed import save_condensed


def mosaics(nclass, ipc, nch=3, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(nclass * ipc, nch, size, size, generator=g), torch.arange(nclass).repeat_interleave(ipc)


def records(path):
    with open(path) as f:
        return json.load(f)


COMMON = ["--epochs", "2", "--device", "cpu", "--batch_size", "32"]


def test_random_baseline_fashion(fake_root, tmp_path):
    out, sub = tmp_path / "r.json", tmp_path / "sub.pt"
    run_script("test.py", "-d", "fashion", "-s", "random", "--ipc", "3", "-f", "1", "--data_dir", fake_root,
               "--repeat", "2", "--results_file", out, "--save_subset", sub, *COMMON)
    rec = records(out)[-1]
    res = rec["results"]["convnet"]
    assert len(res["runs"]) == 2 and 0 <= res["best"]["mean"] <= 100
    assert rec["n_train"] == 30 and rec["args"]["epochs"] == 2  # an explicit --epochs wins
    x, y = torch.load(sub, weights_only=True)
    assert x.shape == (30, 1, 28, 28) and y.tolist() == sum([[c] * 3 for c in range(10)], [])


def test_other_and_cx_cy_decode(fake_root, tmp_path):
    run = tmp_path / "run"
    x, y = mosaics(10, 2)
    save_condensed(str(run / "data_2000.pt"), x, y)
    save_condensed(str(run / "data_100.pt"), x * 0, y)
    sub = tmp_path / "other.pt"
    run_script("test.py", "--reproduce", "-d", "cifar10", "-f", "2", "--ipc", "2", "--test_data_dir", run,
               "--data_dir", fake_root, "--save_subset", sub, *COMMON)
    dx, dy = torch.load(sub, weights_only=True)
    assert dx.shape == (80, 3, 32, 32)  # 10 classes x 2 images x 2² crops
    assert dx.abs().sum() > 0  # data_2000.pt (niter 2000 under --reproduce), not data_100.pt
    sub2 = tmp_path / "cxcy.pt"
    run_script("test.py", "-d", "cifar10", "-f", "2", "--ipc", "2", "--ipcy", "1", "--test_type", "cx_cy",
               "--test_data_dir", run / "data_2000.pt", "--data_dir", fake_root, "--save_subset", sub2, *COMMON)
    cx, cy = torch.load(sub2, weights_only=True)
    assert cx.shape == (40, 3, 32, 32) and torch.equal(cy, torch.arange(10).repeat_interleave(4))
    assert torch.equal(cx[:4], dx[:4])  # IPC-1 = the first f² decoded images of the class
    rec = records(run / "test_results.json")[-1]  # default: next to the evaluated file
    assert rec["test_type"] == "cx_cy" and rec["n_train"] == 40


def test_baseline_b_and_idc_cat(fake_root, tmp_path):
    base = tmp_path / "ipc1"
    for k in range(3):
        x, y = mosaics(10, 1, seed=k)
        save_condensed(str(tmp_path / ("ipc1" if k == 0 else f"ipc1_idx_{k}") / "data_2000.pt"), x, y)
    sub = tmp_path / "b.pt"
    run_script("test.py", "-d", "cifar10", "-f", "2", "--ipc", "3", "--ipcy", "2", "--test_type", "baseline_b",
               "--test_data_dir", base, "--data_dir", fake_root, "--save_subset", sub, *COMMON)
    bx, by = torch.load(sub, weights_only=True)
    assert bx.shape == (80, 3, 32, 32) and torch.equal(by, torch.arange(10).repeat_interleave(8))
    for i in range(2):  # two partitions of 5 classes, real class ids
        x, y = mosaics(5, 2, seed=10 + i)
        save_condensed(str(tmp_path / f"part_5_phase{i}" / "data_500.pt"), x, y + 5 * i)
    sub = tmp_path / "cat.pt"
    run_script("test.py", "-d", "cifar10", "-s", "idc_cat", "--nclass_sub", "5", "--ipc", "2",
               "--test_data_dir", tmp_path / "part", "--data_dir", fake_root, "--save_subset", sub, *COMMON)
    assert torch.load(sub, weights_only=True)[0].shape == (20, 3, 32, 32)


def test_eval_net_and_imagenet(fake_root, tmp_path):
    out = tmp_path / "r.json"
    run_script("test.py", "-d", "svhn", "-s", "random", "--ipc", "1", "--eval_net", "resnet10_bn,convnet",
               "--data_dir", fake_root, "--results_file", out, *COMMON)
    assert set(records(out)[-1]["results"]) == {"resnet10_bn", "convnet"}
    run_script("test.py", "-d", "imagenet", "--nclass", "10", "-s", "random", "--ipc", "1", "--size", "32",
               "--imagenet_dir", os.path.join(fake_root, "imagenet"), "--results_file", out, *COMMON)
    rec = records(out)[-1]
    assert rec["args"]["net_type"] == "resnet_ap" and rec["n_train"] == 10


@pytest.mark.parametrize("extra,needle", [
    (["-d", "cifar10", "--data_dir", "{empty}", "-s", "random", "--ipc", "1"], "not found"),
    (["-d", "cifar10", "--test_data_dir", "{bad_shape}"], "dataset"),
    (["-d", "cifar10", "--test_data_dir", "{bad_classes}"], "classes"),
    (["-d", "cifar10", "--test_type", "cx_cy", "--ipc", "2", "--ipcy", "3", "--test_data_dir", "{good}"],
     "larger than --ipc"),
    (["-d", "cifar10", "--test_type", "nope", "--test_data_dir", "{good}"], "unknown --test_type"),
    (["-d", "tinyimagenet", "-s", "random", "--ipc", "1"], "unknown dataset"),
    (["-d", "cifar10", "--ipc", "5", "--test_data_dir", "{good}"], "--ipc 2"),
    (["-d", "cifar10", "--test_data_dir", "{good}", "--eval_net", "vgg"], "eval_net"),
])
def test_bad_input_one_line_error(fake_root, tmp_path, extra, needle):
    x, y = mosaics(10, 2)
    save_condensed(str(tmp_path / "good.pt"), x, y)
    save_condensed(str(tmp_path / "bad_shape.pt"), torch.rand(20, 1, 28, 28), y)
    save_condensed(str(tmp_path / "bad_classes.pt"), torch.rand(15, 3, 32, 32), torch.arange(15) % 10)
    os.makedirs(tmp_path / "empty")
    paths = {k: str(tmp_path / f"{k}.pt") for k in ("good", "bad_shape", "bad_classes")}
    paths["empty"] = str(tmp_path / "empty")
    args = [a.format(**paths) for a in extra]
    if "--data_dir" not in args:
        args += ["--data_dir", fake_root]
    p = run_script("test.py", *args, *COMMON, "--results_file", tmp_path / "r.json", check=False)
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], p.stderr
    assert not os.path.exists(tmp_path / "r.json")  # no output written on bad input


def test_interrupted_repeats_resume(fake_root, tmp_path):
    """A re-run of the same command keeps the repeats an interrupted invocation finished."""
    out = tmp_path / "r.json"
    base = ["-d", "mnist", "-s", "random", "--ipc", "1", "--data_dir", fake_root, "--results_file", out, *COMMON]
    run_script("test.py", *base, "--repeat", "1")
    first = records(out)[-1]["results"]["convnet"]["runs"][0]
    args = [*base, "--repeat", "2"]
    # an interrupted --repeat 2 run of the same settings left one finished repeat behind
    from evaluation.records import PartialRuns
    from test import get_args_parser
    from utils.arguments import parse_args

    ns = parse_args(get_args_parser(), [str(a) for a in args])
    marker = dict(first, best=12.34)
    PartialRuns(str(out), ns).save("convnet", [marker])
    p = run_script("test.py", *args)
    rec = records(out)[-1]["results"]["convnet"]
    assert "already done" in p.stdout and rec["runs"][0]["best"] == 12.34 and len(rec["runs"]) == 2
    assert not os.path.exists(str(out) + ".partial")  # removed once the record is written


def test_run_tag_names_the_default_results_file(tmp_path):
    """Tables that evaluate one condensed set (YOCO Tables 1, 3, 5) write to their own results files."""
    import test as test_py
    from evaluation.records import default_results_file
    from utils.arguments import parse_args
    from utils.errors import UserError

    src = tmp_path / "condensed_img" / "idc" / "cifar10" / "set"
    src.mkdir(parents=True)
    args = parse_args(test_py.get_args_parser(), ["--ipc", "10", "--slct_ipc", "1", "--run_tag", "yoco_table3"])
    assert default_results_file(args, str(src)) == str(tmp_path / "log_reproduce_3/idc/cifar10/set/test_results_yoco_table3.json")
    args.run_tag = ""
    assert default_results_file(args, str(src)).endswith("set/test_results.json")
    args.run_tag = "../x"
    with pytest.raises(UserError, match="--run_tag"):
        default_results_file(args, str(src))
