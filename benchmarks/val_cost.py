"""The cost of held-out validation (``test.py --val_per_class K``): one evaluation, ``evaluation.protocol.train_protocol``
on a small set, with the held-out set against the same evaluation without it (the papers' protocol, the baseline),
measured in one run (docs/evaluating.md#held-out-validation).

    python benchmarks/val_cost.py [--device auto|cpu|cuda] [--reps 5] [--epochs 8] [--n 100] [--test_n 2000] [--k 50]

Setting: ``--n`` decoded 32x32 images (random pixels, 10 classes), ConvNet-3 width 128 instance norm, batch 64,
per-sample DSA ``color_crop_flip_scale_rotate`` + CutMix p = 0.5, SGD 0.01/0.9/5e-4, ``--epochs`` epochs with the
protocol's 4 validations on ``--test_n`` CIFAR-shaped uint8 test images; the held-out path also validates on
``--k`` x 10 held-out images at those epochs. Both sets are batched as ``data.loaders`` batches real images (uint8,
``ByteNormalize`` per batch, CPU batches of ``CPU_TEST_BATCH``). Both paths train a copy of one initial network
from the same seed (so they run the same training), alternating ``--reps`` times (``benchmarks.machine``).

Printed: the machine, seconds per evaluation, median (range), for both paths and the ratio held-out / baseline;
and the extra cost estimated for the paper's protocol (1000 epochs, 10 000 test images): 4 passes over K x C
images, from one measured validation pass per image against one measured training epoch.
"""
import copy
import json
import os
import statistics
import sys
from types import SimpleNamespace

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.machine import alternate, bench_parser, describe, set_threads, summary  # noqa: E402
from data.datasets import byte_table  # noqa: E402
from data.loaders import ByteNormalize, CPU_TEST_BATCH, TensorLoader  # noqa: E402
from evaluation.protocol import train_protocol  # noqa: E402
from models import create_model  # noqa: E402
from training.augment import Normalize  # noqa: E402
from training.epochs import evaluate  # noqa: E402
from utils.config import resolve_device, tune_allocator  # noqa: E402


def real_batches(n, dev, seed):
    """``n`` CIFAR-shaped uint8 images with labels, batched as data.loaders batches real images."""
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(n) % 10
    bs = min(500, CPU_TEST_BATCH) if dev.type == "cpu" else 500
    return TensorLoader(x, y, bs, False, dev, transform=ByteNormalize(byte_table("cifar10", 3), dev))


def main(argv=None):
    tune_allocator()  # as every script does through cli.arguments.cli
    p = bench_parser(__doc__)
    p.add_argument("--epochs", type=int, default=8, help="epochs of one evaluation (4 validations)")
    p.add_argument("--n", type=int, default=100, help="decoded training images (10 classes)")
    p.add_argument("--test_n", type=int, default=2000, help="test images of a validation")
    p.add_argument("--k", type=int, default=50, help="held-out images per class (--val_per_class)")
    p.add_argument("--width", type=float, default=1.0, help="ConvNet width multiplier (1 = 128 channels)")
    a = p.parse_args(argv)
    set_threads(a.threads)
    dev = resolve_device(a.device)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    x, y = torch.rand(a.n, 3, 32, 32), torch.arange(a.n) % 10
    norm = Normalize([0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]).to(dev)
    train = TensorLoader(x, y, 64, True, dev, transform=norm)
    test, held = real_batches(a.test_n, dev, 1), real_batches(10 * a.k, dev, 2)
    model0 = create_model("convnet", nclass=10, nch=3, size=32, depth=3, width=a.width).to(dev)
    args = SimpleNamespace(epochs=a.epochs, lr=0.01, momentum=0.9, weight_decay=5e-4, dsa=True,
                           dsa_strategy="color_crop_flip_scale_rotate", mixup="cut", mix_p=0.5, beta=1.0,
                           precision="fp32")

    def evaluation(held_out):
        def run():
            torch.manual_seed(1)
            train_protocol(copy.deepcopy(model0), train, test, args, progress=False, held_out=held_out)
            sync()
        return run

    paths = {"baseline (off)": evaluation(None), f"--val_per_class {a.k}": evaluation(held)}
    for fn in paths.values():
        fn()  # warm-up
    times = alternate(paths, a.reps)
    passes = alternate({"test": lambda: (evaluate(model0, test), sync()),
                        "held-out": lambda: (evaluate(model0, held), sync())}, a.reps)
    base = statistics.median(times["baseline (off)"])
    print(describe(dev))
    print(f"one evaluation: {a.n} decoded 32x32 images, ConvNet-3 width {a.width:g}, batch 64, DSA + CutMix, "
          f"{a.epochs} epochs, 4 validations on {a.test_n} test images (+ {10 * a.k} held-out images); "
          f"{a.reps} alternating repetitions; seconds, median (range)")
    print(f"{'path':<24}{'s / evaluation':>26}{'vs baseline':>13}")
    for name, t in times.items():
        print(f"{name:<24}{summary(t):>26}{statistics.median(t) / base:>12.3f}×")
    test_pass, held_pass = statistics.median(passes["test"]), statistics.median(passes["held-out"])
    epoch = (base - 4 * test_pass) / a.epochs  # the training part of one epoch
    paper, extra = 1000 * epoch + 4 * test_pass * 10000 / a.test_n, 4 * held_pass
    print(f"one validation pass: test {summary(passes['test'])} s, held-out {summary(passes['held-out'])} s")
    print(f"estimated for the paper's protocol (1000 epochs, 10 000 test images, this training set): "
          f"+{extra:.2f} s on {paper:.0f} s = +{100 * extra / paper:.2f} %")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"machine": describe(dev), "times": times, "passes": passes, "k": a.k, "n": a.n,
                       "epochs": a.epochs, "test_n": a.test_n, "paper_extra_fraction": extra / paper}, f, indent=1)
    return times


if __name__ == "__main__":
    main()
