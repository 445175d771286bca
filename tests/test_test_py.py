"""Smoke tests of test.py as a subprocess on fake datasets (tiny budgets, CPU), and its bad inputs."""
import glob
import json
import os

import pytest
import torch

from conftest import run_cli, run_script
from data.condensed import save_condensed


def mosaics(nclass, ipc, nch=3, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(nclass * ipc, nch, size, size, generator=g), torch.arange(nclass).repeat_interleave(ipc)


def records(path):
    with open(path) as f:
        return json.load(f)


COMMON = ["--epochs", "2", "--device", "cpu", "--batch_size", "32"]


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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
    p = run_cli("test.py", *args, *COMMON, "--results_file", tmp_path / "r.json", check=False)
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], p.stderr
    assert not os.path.exists(tmp_path / "r.json")  # no output written on bad input


@pytest.mark.slow
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
    from cli.arguments import parse_args

    ns = parse_args(get_args_parser(), [str(a) for a in args])
    marker = dict(first, best=12.34)
    PartialRuns(str(out), ns).save("convnet", [marker])
    p = run_script("test.py", *args)
    rec = records(out)[-1]["results"]["convnet"]
    assert "already done" in p.stdout and rec["runs"][0]["best"] == 12.34 and len(rec["runs"]) == 2
    assert not glob.glob(str(out) + "*.partial")  # removed once the record is written


def test_run_tag_names_the_default_results_file(tmp_path):
    """Tables that evaluate one condensed set (YOCO Tables 1, 3, 5) write to their own results files."""
    import test as test_py
    from evaluation.records import default_results_file
    from cli.arguments import parse_args
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


def _run_main(argv, monkeypatch, wrap=None):
    """test.py's ``main`` in-process through the real parser, loaders and protocol; ``train_one_epoch``
    is counted per loader (and replaced by ``wrap`` when given: a fast stub for long ImageNet budgets)."""
    import evaluation.protocol as protocol
    import test as test_py
    from cli.arguments import parse_args

    seen = []
    real = protocol.train_one_epoch

    def counted(model, loader, opt, **kw):
        seen.append(loader)
        return (wrap or real)(model, loader, opt, **kw)

    monkeypatch.setattr(protocol, "train_one_epoch", counted)
    args = parse_args(test_py.get_args_parser(), [str(a) for a in argv])
    return test_py.main(args), seen


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step")  # the stub takes no optimiser step
@pytest.mark.parametrize("choice,epochs", [(None, 2000), ("full", 2000), ("subset", 3000)])
def test_imagenet_prefix_trains_the_chosen_epochs(fake_root, tmp_path, monkeypatch, choice, epochs):
    """ImageNet cx_cy of an IPC-10 set, IPC-1 evaluated: the reference's epochs of IPC-10 (2000) by default
    and under --prefix_epochs full, those of IPC-1 (3000) with subset; the protocol really runs them."""
    x, y = mosaics(10, 10, size=32)
    save_condensed(str(tmp_path / "set.pt"), x, y)
    flag = [] if choice is None else ["--prefix_epochs", choice]
    rec, seen = _run_main(["-d", "imagenet", "--nclass", "10", "--size", "32", "-f", "1", "--ipc", "10", "--ipcy", "1",
                           "--test_type", "cx_cy", "--test_data_dir", tmp_path / "set.pt", "--imagenet_dir",
                           os.path.join(fake_root, "imagenet"), "--device", "cpu", "--results_file",
                           tmp_path / "r.json", *flag], monkeypatch, wrap=lambda *a, **k: (0.0, 0.0, 0.0))
    assert len(seen) == epochs and rec["args"]["epochs"] == epochs and rec["n_train"] == 10
    assert rec["args"]["prefix_epochs"] == (choice or "full")
    assert [e for e, _ in rec["results"]["resnet_ap"]["runs"][0]["curve"]] == [epochs // 4 * k for k in (1, 2, 3, 4)]


def _dsa_file(path, nclass=10, ipc=2, n_exp=5):
    """A DC/DSA result file (dict, ``data[e] = [images, labels]`` per experiment e, stored normalised):
    experiment 3, which MDC's test.py evaluates (its reference's exp_idx), has ``ipc`` images per class,
    the others one."""
    x, y = mosaics(nclass, ipc)
    x1, y1 = mosaics(nclass, 1)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save({"data": [[(x - 0.5) / 0.25, y] if e == 3 else [x1, y1] for e in range(n_exp)]}, path)


def test_dc_dsa_read_experiment_3_and_a_short_file_is_an_error(fake_root, tmp_path):
    _dsa_file(str(tmp_path / "short.pt"), n_exp=3)
    p = run_cli("test.py", "-d", "cifar10", "-s", "dsa", "--ipc", "2", "--test_data_dir", tmp_path / "short.pt",
                "--data_dir", fake_root, "--results_file", tmp_path / "r.json", *COMMON, check=False)
    assert p.returncode == 2 and "holds 3 experiment(s)" in p.stderr and "experiment 3" in p.stderr
    assert not (tmp_path / "r.json").exists()


@pytest.mark.slow
def test_source_hook_dsa_recorded(fake_root, tmp_path):
    """-s dsa on CIFAR: factor 1 and no CutMix (a DSA set is not decoded), recorded with the evaluation."""
    _dsa_file(str(tmp_path / "dsa" / "res.pt"))
    out = tmp_path / "r.json"
    p = run_script("test.py", "-d", "cifar10", "-s", "dsa", "--ipc", "2", "--test_data_dir",
                   tmp_path / "dsa" / "res.pt", "--data_dir", fake_root, "--results_file", out, *COMMON)
    rec = records(out)[-1]
    assert rec["n_train"] == 20 and rec["args"]["source_hook"] == {"factor": 1, "mixup": "vanilla"}
    assert (rec["args"]["factor"], rec["args"]["mixup"]) == (1, "vanilla")
    assert rec["args"]["dsa_strategy"] == "color_crop_cutout_flip_scale_rotate"
    assert "-s dsa: factor 1, mixup vanilla" in p.stdout


def test_source_hook_dc_no_dsa_crop_flip(fake_root, tmp_path, monkeypatch):
    """-s dc on CIFAR: DC's result-dict file, factor 1, no CutMix, no DSA; the reference's per-sample
    RandomCrop(32, padding 4) + flip instead, through the real loader (two real training epochs)."""
    import torchvision.transforms as T

    _dsa_file(str(tmp_path / "dc" / "res.pt"))
    rec, seen = _run_main(["-d", "cifar10", "-s", "dc", "--ipc", "2", "--test_data_dir", tmp_path / "dc" / "res.pt",
                           "--data_dir", fake_root, "--results_file", tmp_path / "r.json", *COMMON], monkeypatch)
    assert rec["args"]["source_hook"] == {"factor": 1, "mixup": "vanilla", "dsa": False} and rec["n_train"] == 20
    assert len(seen) == 2
    tf = seen[0].sample_transform
    assert [type(t) for t in tf.transforms] == [T.RandomCrop, T.RandomHorizontalFlip]
    assert tf.transforms[0].padding == 4 and seen[0].transform is None  # stored normalised: no Normalize
    torch.manual_seed(0)
    xb, _ = next(iter(seen[0]))
    assert xb.shape == (20, 3, 32, 32) and not torch.equal(xb.sort(0).values, seen[0].images.sort(0).values)
