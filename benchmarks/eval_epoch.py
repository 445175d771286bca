"""Evaluation speed: seconds per training epoch of the evaluation protocol and per validation pass, as ratios
measured in one run against the fp32 path (the faithful default).

    python benchmarks/eval_epoch.py [--device auto|cpu|cuda] [--reps 5] [--epochs 3] [--n 400] [--compile]

Setting: 400 decoded 32×32 images (CIFAR-10 IPC 10, f = 2), ConvNet-3 width 128 instance norm, batch 64,
per-sample DSA ``color_crop_flip_scale_rotate`` + CutMix p = 0.5, SGD 0.01/0.9/5e-4, through the real
``training.epochs.train_one_epoch`` and ``data.loaders.TensorLoader``; one validation = ``training.epochs.evaluate``
over 10 000 CIFAR-shaped test images (batch 500).

Paths: ``fp32`` (the default; the baseline), ``bf16`` (``--precision bf16``: autocast), ``fp32 channels-last``
(the training network and its batches in channels-last memory order) and, with ``--compile``, ``fp32
compiled`` (``torch.compile`` of the network; compilation happens in the warm-up and is not timed). Every
path trains its own copy of one initial network; the paths alternate, ``--reps`` times ``--epochs`` epochs
each after one warm-up epoch. GFLOP/s: counted forward FLOPs (conv + linear, 2·MAC) × 3 per image over the
measured time (a lower bound: DSA, norms and activations are not counted).
"""
import copy
import json
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.machine import alternate, bench_parser, describe, set_threads, summary  # noqa: E402
from data.loaders import TensorLoader  # noqa: E402
from models import create_model  # noqa: E402
from training.augment import DiffAug, Normalize  # noqa: E402
from utils.config import resolve_device, tune_allocator  # noqa: E402
from models.flops import count_flops  # noqa: E402
from training.precision import autocast  # noqa: E402
from training.epochs import evaluate, train_one_epoch  # noqa: E402


def main(argv=None):
    tune_allocator()  # as every script does through cli.arguments.cli
    p = bench_parser(__doc__)
    p.add_argument("--epochs", type=int, default=3, help="epochs per path and repetition")
    p.add_argument("--n", type=int, default=400, help="decoded training images")
    p.add_argument("--val_n", type=int, default=10000, help="test images of a validation pass (the protocol's 10 000; "
                   "fewer: the estimate scales the time up)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile of the network")
    p.add_argument("--dry-run", action="store_true", help="check the arguments and exit")
    a = p.parse_args(argv)
    if a.dry_run:
        return None
    set_threads(a.threads)
    dev = resolve_device(a.device)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    x, y = torch.rand(a.n, 3, 32, 32), torch.arange(10).repeat_interleave(a.n // 10)
    norm = Normalize([0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]).to(dev)
    loader = TensorLoader(x, y, 64, True, dev, transform=norm)
    cl_loader = TensorLoader(x.contiguous(memory_format=torch.channels_last), y, 64, True, dev, transform=norm)
    model0 = create_model("convnet", nclass=10, nch=3, size=32, depth=3).to(dev)
    aug = DiffAug("color_crop_flip_scale_rotate", batch=False)
    paths = {"fp32": ("fp32", False, False), "bf16": ("bf16", False, False), "fp32 channels-last": ("fp32", True, False)}
    if a.compile:
        paths["fp32 compiled"] = ("fp32", False, True)
    trainers = {}
    for name, (precision, cl, comp) in paths.items():
        model = copy.deepcopy(model0)
        if cl:
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), 0.01, momentum=0.9, weight_decay=5e-4)
        net = torch.compile(model) if comp else model
        amp = (lambda precision=precision: autocast(precision, dev))

        def run(net=net, opt=opt, amp=amp, ld=cl_loader if cl else loader, epochs=a.epochs):
            for _ in range(epochs):
                train_one_epoch(net, ld, opt, aug=aug, mixup="cut", mix_p=0.5, amp=amp)
            sync()
        run(epochs=1)  # warm-up (and compilation)
        trainers[name] = run
    train_t = alternate(trainers, a.reps)
    tx = torch.randn(a.val_n, 3, 32, 32)
    val = TensorLoader(tx, torch.randint(0, 10, (a.val_n,)), 500, False, dev)
    vmodel = copy.deepcopy(model0)
    vals = {name: (lambda precision=precision: (evaluate(vmodel, val, amp=lambda: autocast(precision, dev)), sync()))
            for name, precision in (("fp32", "fp32"), ("bf16", "bf16"))}
    for fn in vals.values():
        fn()
    val_t = alternate(vals, a.reps)
    flops = 3 * count_flops(model0, (1, 3, 32, 32)) * a.n
    print(describe(dev))
    print(f"evaluation training epoch: {a.n} decoded 32x32 images, ConvNet-3, batch 64, DSA + CutMix; "
          f"{a.reps} alternating repetitions of {a.epochs} epochs; seconds per epoch, median (range)")
    print(f"{'path':<22}{'s / epoch':>24}{'vs fp32':>10}{'GFLOP/s':>10}")
    base = statistics.median(train_t["fp32"]) / a.epochs
    for name, t in train_t.items():
        per = [v / a.epochs for v in t]
        m = statistics.median(per)
        print(f"{name:<22}{summary(per):>24}{base / m:>9.2f}×{flops / m / 1e9:>10.0f}")
    print(f"validation on {a.val_n} CIFAR-shaped test images (batch 500); seconds, median (range)")
    vb = statistics.median(val_t["fp32"])
    for name, t in val_t.items():
        print(f"{name:<22}{summary(t):>24}{vb / statistics.median(t):>9.2f}×")
    est = 1000 * base + 4 * vb * 10000 / a.val_n  # the protocol validates on 10 000 test images
    print(f"estimated 1000-epoch protocol incl. 4 validations, fp32: {est:.0f} s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"machine": describe(dev), "n": a.n, "val_n": a.val_n, "epochs_per_rep": a.epochs,
                       "train": train_t, "validation": val_t, "protocol_seconds_fp32": est}, f, indent=1)
    return train_t, val_t


if __name__ == "__main__":
    main()
