"""Seconds per training epoch of the evaluation loop, and achieved GFLOP/s (issue: foundation).

Setting of the reference measurement: 400 decoded 32×32 images (CIFAR-10 IPC10, f = 2), ConvNet-3
width 128 instance norm, batch 64, per-sample DSA ``color_crop_flip_scale_rotate`` + CutMix p = 0.5,
SGD 0.01/0.9/5e-4 — through the real ``utils.train.train_one_epoch`` and ``data.loaders.TensorLoader``.
FLOPs: counted forward FLOPs (conv + linear, 2·MAC) × 3 for forward + backward, over measured time.
Also times one validation pass over 10 000 test images and estimates the whole 1000-epoch protocol.

    python benchmarks/eval_epoch.py [--device cpu] [--epochs 30]
"""
import argparse
import os
import platform
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from data.loaders import TensorLoader  # noqa: E402
from models import create_model  # noqa: E402
from utils.augment import DiffAug, Normalize  # noqa: E402
from utils.config import resolve_device, tune_allocator  # noqa: E402
from utils.flops import count_flops  # noqa: E402
from utils.train import evaluate, train_one_epoch  # noqa: E402

REFERENCE = {"epoch_s": 0.97, "gflops": 120.0, "protocol_s": 1444.0}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="auto")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--n", type=int, default=400)
    p.add_argument("--default-malloc", action="store_true", help="measure without utils.config.tune_allocator")
    a = p.parse_args()
    tuned = False if a.default_malloc else tune_allocator()
    dev = resolve_device(a.device)
    torch.manual_seed(0)
    x, y = torch.rand(a.n, 3, 32, 32), torch.arange(10).repeat_interleave(a.n // 10)
    norm = Normalize([0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]).to(dev)
    loader = TensorLoader(x, y, 64, True, dev, transform=norm)
    model = create_model("convnet", nclass=10, nch=3, size=32, depth=3).to(dev)
    opt = torch.optim.SGD(model.parameters(), 0.01, momentum=0.9, weight_decay=5e-4)
    aug = DiffAug("color_crop_flip_scale_rotate", batch=False)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    train_one_epoch(model, loader, opt, aug=aug, mixup="cut", mix_p=0.5)  # warm-up
    times = []
    for _ in range(a.epochs):
        sync()
        t = time.perf_counter()
        train_one_epoch(model, loader, opt, aug=aug, mixup="cut", mix_p=0.5)
        sync()
        times.append(time.perf_counter() - t)
    epoch_s = statistics.median(times)
    flops = 3 * count_flops(model, (1, 3, 32, 32)) * a.n
    tx = torch.randn(10000, 3, 32, 32)
    val = TensorLoader(tx, torch.randint(0, 10, (10000,)), 500, False, dev)
    sync()
    t = time.perf_counter()
    evaluate(model, val)
    sync()
    val_s = time.perf_counter() - t
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; allocator tuned: {tuned}")
    print(f"train epoch (400 decoded imgs, DSA+CutMix): {epoch_s:.3f} s  (median of {a.epochs}, "
          f"range {min(times):.3f}-{max(times):.3f}; reference {REFERENCE['epoch_s']} s)")
    print(f"achieved: {flops / epoch_s / 1e9:.1f} GFLOP/s  (reference ≈{REFERENCE['gflops']:.0f})")
    print(f"validation on 10000 test images: {val_s:.2f} s")
    est = 1000 * epoch_s + 4 * val_s
    print(f"estimated 1000-epoch protocol incl. 4 validations: {est:.0f} s  (reference {REFERENCE['protocol_s']:.0f} s)")


if __name__ == "__main__":
    main()
