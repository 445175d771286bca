"""The shared command line: presets as defaults, explicit flags win, derived settings; the
evaluation LR schedule and protocol."""
import argparse

import pytest
import torch

from condensation.run_files import condense_tag
from condensation.runner import tune_lr_img
from evaluation.protocol import milestones, train_protocol
from test import get_args_parser
from cli.arguments import ipc_epoch, parse_args, str2bool
from utils.errors import UserError


def parse(*argv):
    return parse_args(get_args_parser(), list(argv))


def test_str2bool_accepts_reference_spellings():
    assert str2bool("True") is True and str2bool("False") is False and str2bool("1") is True
    with pytest.raises(argparse.ArgumentTypeError):
        str2bool("maybe")
    assert parse("--adaptive_reg", "True", "--ipc", "2").adaptive_reg is True


def test_reproduce_presets_and_explicit_flags_win():
    a = parse("--reproduce", "-d", "cifar10", "-f", "2", "--ipc", "10")
    assert (a.niter, a.metric, a.n_data, a.lr_img, a.depth) == (2000, "mse", 2000, 5e-3, 3)
    assert a.epochs == 1000 and a.mix_p == 0.5 and a.dsa and a.init == "mix"
    assert a.dsa_strategy == "color_crop_flip_scale_rotate"  # cutout removed under CutMix
    b = parse("--reproduce", "-d", "cifar10", "--ipc", "10", "--niter", "7", "--epochs", "3", "--mix_p", "0.2")
    assert (b.niter, b.epochs, b.mix_p) == (7, 3, 0.2)  # the reference silently forced epochs to 1000
    c = parse("--reproduce", "-d", "mnist", "-f", "2", "--ipc", "10")
    assert (c.aug_type, c.mixup, c.dsa_strategy) == ("color_crop", "vanilla", "color_crop_scale_rotate")
    d = parse("--reproduce", "-d", "svhn", "--ipc", "10")
    assert d.dsa_strategy == "color_crop_scale_rotate" and d.n_data == 500
    e = parse("--reproduce", "-d", "imagenet", "--nclass", "10", "-f", "3", "--ipc", "20")
    assert (e.net_type, e.depth, e.early, e.decode_type, e.metric) == ("resnet_ap", 10, 10, "bound", "l1")
    assert parse("--reproduce", "-d", "cifar10", "--ipc", "10", "--adaptive_reg", "True").metric == "mse"


def test_dataset_block_and_tags():
    a = parse("-d", "fashion", "--ipc", "10")
    assert (a.nch, a.size, a.nclass, a.depth, a.idx_from) == (1, 28, 10, 3, 2)
    with pytest.raises(UserError, match="unknown dataset"):
        parse("-d", "foo")
    r = parse("--reproduce", "-d", "cifar10", "-f", "2", "--ipc", "10", "--adaptive_reg", "True")
    tag = r.modeltag + condense_tag(r, 5e-3)
    assert tag == "conv3in_grad_mse_nd2000_cut_niter2000_factor2_lr0.005_mix_ipc10"  # the reference's CIFAR-10 run
    assert tune_lr_img(r, 5e-3) == pytest.approx(5e-3)
    r1 = parse("--reproduce", "-d", "cifar10", "--ipc", "1")
    assert tune_lr_img(r1, 5e-3) == pytest.approx(5e-4)  # linear in ipc (reference
    # he-y/Multisize-Dataset-Condensation/argument.py, tune_lr_img; docs/algorithms.md#derived-settings)


def test_imagenet_epochs():
    # decoded counts 1, 10, 45, 90, 450 (MDC reference argument.py, ipc_epoch; docs/algorithms.md#derived-settings)
    assert [ipc_epoch(1, 1), ipc_epoch(10, 1), ipc_epoch(5, 3), ipc_epoch(10, 3), ipc_epoch(50, 3)] == \
        [3000, 2000, 1500, 1000, 500]
    assert ipc_epoch(10, 3, nclass=100) == 600  # ⌊2/3·1000⌋ to a multiple of 100
    assert ipc_epoch(20, 3, bound=128) == 1000


def test_lr_schedule_milestones():
    assert milestones(1000) == [666, 833]
    m = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(m.parameters(), 0.01)
    s = torch.optim.lr_scheduler.MultiStepLR(opt, milestones(1000), 0.2)
    lrs = []
    for _ in range(1000):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        s.step()
    assert lrs[665] == pytest.approx(0.01) and lrs[666] == pytest.approx(0.002)
    assert lrs[832] == pytest.approx(0.002) and lrs[833] == pytest.approx(0.0004)


def test_train_protocol_validates_four_times_and_learns():
    torch.manual_seed(0)
    x = torch.cat([torch.randn(20, 3, 8, 8) + 2, torch.randn(20, 3, 8, 8) - 2])
    y = torch.arange(2).repeat_interleave(20)

    class L:  # a tiny loader
        def __iter__(self):
            p = torch.randperm(40)
            for i in range(0, 40, 16):
                yield x[p[i:i + 16]], y[p[i:i + 16]]

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 2))
    a = argparse.Namespace(epochs=8, lr=0.01, momentum=0.9, weight_decay=5e-4, dsa=True,
                           dsa_strategy="color_crop_flip_scale_rotate", mixup="cut", mix_p=0.5, beta=1.0)
    r = train_protocol(model, L(), [(x, y)], a, progress=False)
    assert [e for e, _ in r["curve"]] == [2, 4, 6, 8]
    assert r["best"] >= r["last"] and r["best"] > 90


# the reference's -s hooks (its argument.py lines 297-307, inside the CIFAR block): derived defaults
HOOKS = {
    "dsa": {"factor": 1, "mixup": "vanilla"},
    "dc": {"factor": 1, "mixup": "vanilla", "dsa": False},
    "mtt": {"factor": 1},
    "dream": {"batch_real": 128},
}


@pytest.mark.parametrize("slct", sorted(HOOKS))
def test_source_hooks_are_derived_defaults(slct):
    a = parse("--reproduce", "-d", "cifar10", "--ipc", "10", "-s", slct)
    assert a.source_hook == HOOKS[slct]  # recorded in the resolved args (saved with every record)
    for key, value in HOOKS[slct].items():
        assert getattr(a, key) == value
    want = {"factor": 1, "mixup": "cut", "dsa": True, "batch_real": 64}
    want.update(HOOKS[slct])
    assert (a.factor, a.mixup, a.dsa, a.batch_real) == (want["factor"], want["mixup"], want["dsa"], want["batch_real"])
    assert a.init == "random" and a.epochs == 1000 and a.augment == (not want["dsa"])
    # CutMix off keeps cutout in the DSA strategy (the reference drops it only under CutMix)
    assert ("cutout" in a.dsa_strategy) == (want["mixup"] == "vanilla")
    assert parse("-d", "cifar100", "--ipc", "10", "-s", slct).source_hook == HOOKS[slct]


def test_source_hooks_override_the_f2_convention_but_explicit_flags_win(capsys):
    a = parse("-d", "cifar10", "--ipc", "10", "-s", "dsa")
    assert (a.factor, a.mixup, a.dsa_strategy) == (1, "vanilla", "color_crop_cutout_flip_scale_rotate")
    b = parse("-d", "cifar10", "--ipc", "10", "-s", "dsa", "-f", "2", "--mixup", "cut")
    assert (b.factor, b.mixup, b.init, b.source_hook) == (2, "cut", "mix", {})
    assert "-s dsa" in capsys.readouterr().err  # a note says what the reference would have used
    c = parse("-d", "cifar10", "--ipc", "10", "-s", "dc", "--dsa", "True")
    assert (c.dsa, c.factor, c.mixup, c.source_hook) == (True, 1, "vanilla", {"factor": 1, "mixup": "vanilla"})
    d = parse("-d", "cifar10", "--ipc", "10", "-s", "dream", "--batch_real", "32")
    assert d.batch_real == 32 and d.source_hook == {}
    e = parse("-d", "cifar10", "--ipc", "10", "-s", "mtt", "--factor", "1")
    assert e.factor == 1 and e.source_hook == {}  # explicit, so not the hook's


def test_source_hooks_only_on_cifar_and_after_the_presets(tmp_path):
    for d in ("svhn", "mnist", "fashion"):  # the reference's hooks sit in its CIFAR block only
        a = parse("-d", d, "--ipc", "10", "-s", "dsa", "-f", "2")
        assert (a.factor, a.mixup, a.source_hook) == (2, "cut", {})
    presets = tmp_path / "p.yaml"
    presets.write_text("rules:\n  - if: {dataset: [cifar10]}\n    set: {factor: 2, mixup: cut, dsa: true}\n")
    a = parse("--reproduce", "--presets", str(presets), "-d", "cifar10", "--ipc", "10", "-s", "dc")
    assert (a.factor, a.mixup, a.dsa) == (1, "vanilla", False)  # the hooks run after the presets


def test_prefix_epochs_full_by_default_and_under_reproduce():
    cx = ["-d", "imagenet", "--nclass", "10", "-f", "3", "--ipc", "10", "--ipcy", "1"]
    for tt in ("cx_cy", "baseline_b"):
        base = [*cx, "--test_type", tt]
        full = ipc_epoch(10, 3)  # 90 decoded images: 1000 epochs
        assert (full, ipc_epoch(1, 3)) == (1000, 2000)
        a = parse(*base)
        assert (a.prefix_epochs, a.epochs) == ("full", full)
        r = parse("--reproduce", *base)
        assert (r.prefix_epochs, r.epochs) == ("full", full)
        s = parse("--reproduce", *base, "--prefix_epochs", "subset")  # an explicit flag beats the preset
        assert (s.prefix_epochs, s.epochs) == ("subset", 2000)
        assert parse(*base, "--prefix_epochs", "subset", "--epochs", "7").epochs == 7  # --epochs wins
    # ImageNet-100: 2/3 of the count's epochs; bound decoding caps the count as the full-set rule
    assert parse("-d", "imagenet", "--nclass", "100", "-f", "3", "--ipc", "10", "--ipcy", "2", "--test_type",
                 "cx_cy", "--prefix_epochs", "subset").epochs == ipc_epoch(2, 3, nclass=100) == 1000
    assert parse("--reproduce", "-d", "imagenet", "--nclass", "10", "-f", "3", "--ipc", "20", "--ipcy", "20",
                 "--test_type", "cx_cy", "--prefix_epochs", "subset").epochs == ipc_epoch(20, 3, bound=128)
    # the whole set (--test_type other) ignores the flag
    assert parse(*cx, "--prefix_epochs", "subset").epochs == 1000


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "svhn", "mnist", "fashion"])
def test_prefix_epochs_do_not_depend_on_ipc_outside_imagenet(dataset):
    """The reference's non-ImageNet epochs are 1000 whatever the IPC: both choices give 1000."""
    for choice in ("full", "subset"):
        a = parse("-d", dataset, "-f", "2", "--ipc", "10", "--ipcy", "1", "--test_type", "cx_cy",
                  "--prefix_epochs", choice)
        assert a.epochs == 1000
