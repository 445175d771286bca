"""``test.py --val_per_class K --val_seed S`` (docs/evaluating.md#held-out-validation): K real training images per
class held out, never trained on, validated at the test epochs; ``best_on_val`` is the test accuracy at the best
held-out epoch. Checked on the tiny fake datasets, in process (``conftest.run_cli``), by index and bit for bit."""
import glob
import json
import os
import random

import numpy as np
import pytest
import torch

from conftest import ROOT, run_cli
from data.condensed import save_condensed
from helpers import job_argvs, refused

FAST = ["--epochs", "4", "--device", "cpu", "--batch_size", "32", "--width", "0.125", "--deterministic", "True"]
K = 3  # the fake CIFAR-10 has 10 training images per class


def cifar(fake_root, *flags):
    return ["-d", "cifar10", "--data_dir", fake_root, *FAST, *flags]


def record(path):
    with open(path) as f:
        return json.load(f)[-1]


def condensed_set(tmp_path, ipc=2):
    """A condensed CIFAR-10 set of random (synthetic) images, f = 1: its path and tensors."""
    g = torch.Generator().manual_seed(7)
    x, y = torch.rand(10 * ipc, 3, 32, 32, generator=g), torch.arange(10).repeat_interleave(ipc)
    path = str(tmp_path / "set.pt")
    save_condensed(path, x, y)
    return path, x, y


def run_capturing(monkeypatch, argv):
    """test.py in process; returns (its record, the training loader, the held-out loader or None, its stdout)."""
    import evaluation.protocol as protocol

    seen = {}
    real_loaders, real_held_out = protocol.loaders, protocol.held_out_set

    def loaders(*a, **k):
        seen["train"], seen["test"] = real_loaders(*a, **k)
        return seen["train"], seen["test"]

    def held_out_set(*a, **k):
        seen["held_out"] = real_held_out(*a, **k)
        return seen["held_out"]

    monkeypatch.setattr(protocol, "loaders", loaders)
    monkeypatch.setattr(protocol, "held_out_set", held_out_set)
    out = argv[argv.index("--results_file") + 1]
    p = run_cli("test.py", *argv)
    return record(out), seen["train"], seen["held_out"], p.stdout


def train_split(fake_root):
    from data.datasets import load_tensors

    return load_tensors("cifar10", fake_root, train=True)


def indices_of(images, fake_root):
    """The train-split indices of uint8 images (every fake image is distinct)."""
    x, _ = train_split(fake_root)
    where = {bytes(img.numpy()): i for i, img in enumerate(x)}
    assert len(where) == len(x)
    return [where[bytes(img.numpy())] for img in images]


def real_rows(loader, fake_root):
    """The train-split indices of the images a loader holds (float [0, 1] training images or uint8 held-out)."""
    imgs = loader.images.cpu()
    if imgs.dtype != torch.uint8:
        imgs = (imgs * 255).round().to(torch.uint8)
    return indices_of(imgs, fake_root)


def test_random_source_never_trains_on_a_held_out_image(fake_root, tmp_path, monkeypatch):
    """-s random: the held-out indices are taken out before the first --ipc per class are chosen."""
    from data.datasets import held_out_indices

    rec, train, held, _ = run_capturing(monkeypatch, cifar(fake_root, "-s", "random", "--ipc", "4", "--val_per_class",
                                                        K, "--results_file", tmp_path / "r.json"))
    _, y = train_split(fake_root)
    chosen, held_idx = real_rows(train, fake_root), real_rows(held, fake_root)
    assert held_idx == held_out_indices(y, 10, K, 0).tolist() and len(held_idx) == 10 * K
    assert not set(chosen) & set(held_idx)
    free = [i for i in range(len(y)) if i not in set(held_idx)]  # the first 4 per class of the rest, in order
    assert chosen == [i for c in range(10) for i in [j for j in free if y[j] == c][:4]]
    assert rec["n_train"] == 40 and "3 held out" in rec["source"]
    first = [i for c in range(10) for i in (y == c).nonzero().flatten()[:4].tolist()]
    assert chosen != first  # some of the first 4 were held out: their places go to the class's next images
    off = cifar(fake_root, "-s", "random", "--ipc", "4", "--results_file", tmp_path / "off.json")
    rec_off, train_off, _, _ = run_capturing(monkeypatch, off)
    assert real_rows(train_off, fake_root) == first and "held out" not in rec_off["source"]  # off: the reference's


def test_condensed_set_trains_on_the_synthetic_images_only(fake_root, tmp_path, monkeypatch):
    path, x, y = condensed_set(tmp_path)
    rec, train, held, _ = run_capturing(monkeypatch, cifar(fake_root, "--test_data_dir", path, "--val_per_class", K,
                                                        "--results_file", tmp_path / "r.json"))
    assert torch.equal(train.images.cpu(), x) and torch.equal(train.targets.cpu(), y)
    assert held.images.dtype == torch.uint8 and len(set(real_rows(held, fake_root))) == 10 * K  # real images
    assert held.shuffle is False and held.sample_transform is None  # fixed order, no augmentation


def test_held_out_set_depends_only_on_labels_k_and_seed():
    """The same seed gives the same set; another seed another; a larger K extends it; no global RNG is drawn."""
    from data.datasets import held_out_indices

    y = torch.arange(200) % 10
    states = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    a, b = held_out_indices(y, 10, 5, 0), held_out_indices(y, 10, 5, 0)
    assert torch.equal(a, b) and not torch.equal(a, held_out_indices(y, 10, 5, 1))
    assert torch.equal(torch.get_rng_state(), states[0]) and (np.random.get_state()[1] == states[1]).all()
    assert random.getstate() == states[2]
    assert all((y[a[5 * c:5 * c + 5]] == c).all() for c in range(10)) and len(set(a.tolist())) == 50
    bigger = held_out_indices(y, 10, 8, 0)
    assert all(set(a[5 * c:5 * c + 5].tolist()) <= set(bigger[8 * c:8 * c + 8].tolist()) for c in range(10))


def test_best_on_validation_is_the_test_accuracy_at_the_earliest_best_epoch():
    from evaluation.protocol import best_on_validation

    curve = [(1, 10.0), (2, 20.0), (3, 30.0), (4, 40.0)]
    assert best_on_validation(curve, [(1, 5.0), (2, 50.0), (3, 50.0), (4, 20.0)]) == 20.0  # tie: epoch 2
    assert best_on_validation(curve, [(1, 7.0), (2, 7.0), (3, 7.0), (4, 7.0)]) == 10.0
    with pytest.raises(ValueError):
        best_on_validation(curve, [(1, 5.0), (3, 5.0)])


def test_the_option_changes_no_test_number_and_adds_best_on_val(fake_root, tmp_path, monkeypatch):
    """A condensed set, 2 repeats: the trained weights and best, last and curve bit-identical with the option off
    and on; the on-record's best_on_val is the test accuracy at the earliest epoch of highest held-out accuracy,
    summarised like best."""
    import evaluation.protocol as protocol
    from evaluation.protocol import summarize

    real, weights = protocol.train_protocol, []

    def keeping_weights(model, *a, **k):
        res = real(model, *a, **k)
        weights.append([p.detach().clone() for p in model.parameters()])
        return res

    monkeypatch.setattr(protocol, "train_protocol", keeping_weights)
    path, _, _ = condensed_set(tmp_path)
    base = cifar(fake_root, "--test_data_dir", path, "--repeat", "2")
    run_cli("test.py", *base, "--results_file", tmp_path / "off.json")
    run_cli("test.py", *base, "--val_per_class", K, "--results_file", tmp_path / "on.json")
    assert len(weights) == 4 and all(torch.equal(a, b) for w, v in zip(weights[:2], weights[2:]) for a, b in zip(w, v))
    assert not all(torch.equal(a, b) for a, b in zip(weights[0], weights[1]))  # the repeats differ
    off, on = record(tmp_path / "off.json")["results"]["convnet"], record(tmp_path / "on.json")["results"]["convnet"]
    for a, b in zip(off["runs"], on["runs"], strict=True):
        assert (a["best"], a["last"], a["curve"]) == (b["best"], b["last"], b["curve"])
        assert [e for e, _ in b["val_curve"]] == [e for e, _ in b["curve"]] == [1, 2, 3, 4]
        top = max(v for _, v in b["val_curve"])
        first = next(i for i, (_, v) in enumerate(b["val_curve"]) if v == top)
        assert b["best_on_val"] == b["curve"][first][1]
        assert "val_curve" not in a and "best_on_val" not in a
    assert (off["best"], off["last"]) == (on["best"], on["last"]) and "best_on_val" not in off
    assert on["best_on_val"] == summarize([r["best_on_val"] for r in on["runs"]])


def test_held_out_evaluation_draws_no_random_number(fake_root):
    """Building the held-out batches and evaluating a network on them leaves every RNG as it was."""
    from cli.arguments import parse_args
    from evaluation.protocol import held_out_set
    from models import create_model
    from test import get_args_parser
    from training.epochs import evaluate

    args = parse_args(get_args_parser(), [str(a) for a in cifar(fake_root, "-s", "random", "--ipc", "1",
                                                                "--val_per_class", K)])
    model = create_model("convnet", nclass=10, nch=3, size=32, depth=3, width=0.125)
    states = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    acc, _, _ = evaluate(model, held_out_set(args, torch.device("cpu")))
    assert 0 <= acc <= 100 and torch.equal(torch.get_rng_state(), states[0])
    assert (np.random.get_state()[1] == states[1]).all() and random.getstate() == states[2]
    args.val_per_class = 0
    assert held_out_set(args, torch.device("cpu")) is None


def test_a_resumed_evaluation_keeps_its_validation_curve(fake_root, tmp_path, monkeypatch):
    """Killed after its first repeat, the same command resumes: the kept repeat's validation curve is the one it
    finished with, and the record equals an uninterrupted run's (the same held-out set on the resume). The .partial
    file is found by the settings, --val_per_class and --val_seed among them."""
    import evaluation.protocol as protocol
    from cli.arguments import parse_args
    from evaluation.records import PartialRuns
    from test import get_args_parser

    path, _, _ = condensed_set(tmp_path)
    out = tmp_path / "r.json"
    argv = cifar(fake_root, "--test_data_dir", path, "--repeat", "2", "--val_per_class", K, "--results_file", out)
    real, calls = protocol.train_protocol, []

    def killed_in_the_second(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(protocol, "train_protocol", killed_in_the_second)
    p = run_cli("test.py", *argv, check=False)
    assert p.returncode == 130 and not out.exists()
    (partial,) = glob.glob(str(out) + ".*.partial")
    with open(partial) as f:
        kept = json.load(f)["runs"]["convnet"]
    assert len(kept) == 1 and len(kept[0]["val_curve"]) == 4
    ns = parse_args(get_args_parser(), [str(a) for a in argv])
    for flag, value in (("val_seed", 1), ("val_per_class", K + 1)):  # other held-out settings: not this file
        other = parse_args(get_args_parser(), [str(a) for a in argv])
        setattr(other, flag, value)
        assert PartialRuns(str(out), other).path != PartialRuns(str(out), ns).path
    monkeypatch.setattr(protocol, "train_protocol", real)
    rec, _, held, stdout = run_capturing(monkeypatch, argv)
    assert "already done" in stdout and not glob.glob(str(out) + ".*.partial")
    resumed = rec["results"]["convnet"]
    assert resumed["runs"][0] == kept[0] and len(resumed["runs"]) == 2
    rec, _, held_whole, _ = run_capturing(monkeypatch, [*argv[:-1], tmp_path / "whole.json"])
    assert torch.equal(held.images, held_whole.images) and torch.equal(held.targets, held_whole.targets)
    fresh = rec["results"]["convnet"]
    for a, b in zip(resumed["runs"], fresh["runs"], strict=True):
        assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}
    assert resumed["best_on_val"] == fresh["best_on_val"]


@pytest.mark.parametrize("flags,needle", [
    (["--val_per_class", "11"], "--val_per_class 11: class 0 has only 10 training images"),
    (["-s", "random", "--ipc", "8", "--val_per_class", "3"], "besides those held out by --val_per_class"),
    (["--val_seed", "2"], "--val_seed has no effect"),
])
def test_too_many_held_out_images_are_refused(fake_root, tmp_path, flags, needle):
    world = tmp_path / "world"
    world.mkdir()
    path, _, _ = condensed_set(world)
    source = [] if "random" in flags else ["--test_data_dir", path]
    refused(world, "test.py", cifar(fake_root, *source, *flags, "--results_file", world / "r.json"), needle)


def test_imagenet_random_source_skips_the_held_out_files(fake_root, monkeypatch):
    """ImageNet -s random: the chosen files (build_train_set's folder) and the held-out files are disjoint; the
    held-out batches come from the train folder with the test transform."""
    import evaluation.sources as sources
    from cli.arguments import parse_args
    from data.loaders import held_out_loader
    from test import get_args_parser

    argv = ["-d", "imagenet", "--nclass", "10", "-s", "random", "--ipc", "2", "--size", "32", "--imagenet_dir",
            os.path.join(fake_root, "imagenet"), "--val_per_class", "2", "--device", "cpu"]
    args = parse_args(get_args_parser(), argv)
    seen = {}
    monkeypatch.setattr(sources, "imagenet_tensors", lambda ds, size: seen.setdefault("ds", ds) and (
        torch.zeros(len(ds.samples), 3, size, size, dtype=torch.uint8), torch.tensor(ds.targets)))
    sources.build_train_set(args)
    chosen = [p for p, _ in seen["ds"].samples]
    held = held_out_loader(args, "cpu", 8).loader.dataset
    held_files = [held.dataset.samples[i][0] for i in held.indices]
    assert len(chosen) == 20 and len(held_files) == 20 and not set(chosen) & set(held_files)
    assert all("/train/" in p for p in held_files)


def test_the_options_are_listed_and_the_table_switch_reaches_every_test_job():
    from test import get_args_parser

    text = get_args_parser().format_help()
    assert "--val_per_class" in text and "--val_seed" in text
    script = os.path.join(ROOT, "scripts", "mdc_table1.sh")
    on = [a for a in job_argvs(script, ["cifar10", "2"], {"VAL_PER_CLASS": "5", "BUDGET": "smoke"})
          if a[1].endswith("test.py")]
    assert on and all(a[a.index("--val_per_class") + 1] == "5" for a in on)
    off = job_argvs(script, ["cifar10", "2"], {"BUDGET": "smoke"})
    assert not any("--val_per_class" in a for a in off)


def test_partial_files_of_earlier_versions_are_still_found(tmp_path):
    """The two options are left out of the .partial key at their defaults: an evaluation interrupted before they
    existed resumes; with the option on, the key (and the file) differs."""
    from types import SimpleNamespace

    from evaluation.records import PartialRuns

    old = {"dataset": "cifar10", "ipc": 2, "epochs": 3}
    path = str(tmp_path / "r.json")
    before = PartialRuns(path, SimpleNamespace(**old)).path
    assert PartialRuns(path, SimpleNamespace(**old, val_per_class=0, val_seed=0)).path == before
    assert PartialRuns(path, SimpleNamespace(**old, val_per_class=5, val_seed=0)).path != before
