"""Cost of YOCO's training-dynamics step (reference he-y/you-only-condense-once/get_training_dynamics.py;
docs/algorithms.md#the-dynamics-run): seconds per epoch and log bytes per epoch.

    python benchmarks/dynamics.py [--epochs 3] [--device cpu] [--threads 2]

Measures, on a 400-image decoded set (random CIFAR-shaped pixels, 10 classes = CIFAR-10 IPC 10, f 2), the
real trainer of ``get_training_dynamics.py`` (ConvNet-3, DSA + CutMix, per-iteration log-softmax records):
seconds per epoch (after one warm-up epoch) and bytes of log per epoch in the reference pickle, in our
lossless compact format and in the statistics-only file (``--compact stats``). Then estimates CIFAR-100
IPC 50 (N = 20 000 decoded images, C = 100, 1000 epochs): time = measured s/epoch x N/400 (per-sample
cost dominates); pickle bytes from one synthetic epoch of records of that shape (the pickle size does not
depend on the values); compact bytes from one synthetic epoch whose log-probabilities follow a softmax of
Gaussian logits with the spread of the measured log (compressibility depends on the values, so this
figure is an estimate); stats bytes per epoch exactly, as the size difference between 2- and 1-epoch files
(13 bytes per sample and epoch whatever the values and C, plus a one-off ~8 bytes per sample for labels).
"""
import argparse
import io
import os
import pickle
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from get_training_dynamics import get_args_parser as dyn_parser  # noqa: E402
from utils.config import resolve_device, set_seed, tune_allocator  # noqa: E402
from yoco.dynamics import DynamicsTrainer, resolve_settings  # noqa: E402
from yoco.dynamics_io import DynamicsLog, save_compact  # noqa: E402
from yoco.dynamics_stats import save_stats  # noqa: E402


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3, help="timed epochs (after one warm-up epoch)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dry-run", action="store_true", help="check the arguments and exit")
    return p


def pickle_bytes(records, name="cifar10"):
    buf = io.BytesIO()
    pickle.dump({"data-name": name, "training_dynamics": records}, buf)
    return buf.tell()


def compact_bytes(records, n, name="cifar10"):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "td.pt")
        save_compact(path, name, records, num_samples=n)
        return os.path.getsize(path)


def stats_bytes(records, targets, n, name="cifar10"):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "td-stats.pt")
        save_stats(path, name, records, targets, num_samples=n)
        return os.path.getsize(path)


def stats_bytes_per_epoch(n, c, name="cifar10", seed=0):
    """``(bytes per epoch, one-off bytes)`` of the stats file (its size does not depend on the values)."""
    y = torch.arange(n) % c
    one, two = (stats_bytes(synthetic_records(n, c, e, 1.0, seed=seed), y, n, name) for e in (1, 2))
    return two - one, 2 * one - two


def synthetic_records(n, c, epochs, logit_std, batch=64, seed=0):
    """Full epochs of records shaped like the trainer's: a shuffled pass in batches of 64, fp16 log-softmax."""
    g = torch.Generator().manual_seed(seed)
    recs = []
    for e in range(epochs):
        perm = torch.randperm(n, generator=g)
        for it, s in enumerate(range(0, n, batch)):
            idx = perm[s:s + batch].clone()  # own storage, as the trainer's records
            out = (torch.randn(len(idx), c, generator=g) * logit_std).log_softmax(1).half()
            recs.append({"epoch": e, "iteration": it, "idx": idx, "output": out})
    return recs


def fmt_bytes(b):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if b < 1024 or unit == "TiB":
            return f"{b:.1f} {unit}"
        b /= 1024


def main(a):
    if a.dry_run:
        return None
    tune_allocator()  # as every script does through cli.arguments.cli
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    set_seed(a.seed)
    args = resolve_settings(dyn_parser().parse_args(["-d", "cifar10", "--epochs", "1000"]))
    n, c = 400, 10
    g = torch.Generator().manual_seed(a.seed)
    x = torch.rand(n, 3, 32, 32, generator=g)
    y = torch.arange(c).repeat_interleave(n // c)
    trainer = DynamicsTrainer(args, x, y, device)
    log = DynamicsLog()
    trainer.epoch(0, log)  # warm-up (allocations, cuDNN autotune)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for e in range(1, a.epochs + 1):
        trainer.epoch(e, log)
    if device.type == "cuda":
        torch.cuda.synchronize()
    sec = (time.perf_counter() - t0) / a.epochs
    E = a.epochs + 1
    pk, cp = pickle_bytes(log.records) / E, compact_bytes(log.records, n) / E
    sb, sb_fixed = stats_bytes_per_epoch(n, c)
    spread = torch.cat([r["output"].float() for r in log.records]).std().item()
    print(f"device {device} ({torch.get_num_threads()} CPU threads), torch {torch.__version__}")
    print(f"measured: N={n} C={c}, {len(trainer.loader)} iterations/epoch, {a.epochs} timed epochs")
    print(f"  seconds per dynamics epoch : {sec:.3f}")
    print(f"  log bytes per epoch        : reference pickle {fmt_bytes(pk)}, compact {fmt_bytes(cp)} "
          f"({pk / cp:.2f}x smaller), stats {fmt_bytes(sb)} ({pk / sb:.2f}x smaller)")
    print(f"  1000 epochs                : {sec * 1000 / 3600:.2f} h, pickle {fmt_bytes(pk * 1000)}, "
          f"compact {fmt_bytes(cp * 1000)}, stats {fmt_bytes(sb * 1000 + sb_fixed)}")
    # CIFAR-100 IPC 50: N = 100 * 50 * 2^2 = 20 000, C = 100, 1000 epochs
    N, C, EP = 20000, 100, 1000
    sec_big = sec * N / n
    recs = synthetic_records(N, C, 1, logit_std=max(spread, 1.0), seed=a.seed)
    pk_big, cp_big = pickle_bytes(recs, "cifar100"), compact_bytes(recs, N, "cifar100")
    sb_big, sb_fixed_big = stats_bytes_per_epoch(N, C, "cifar100", a.seed)
    print(f"estimate CIFAR-100 IPC50: N={N} C={C}, {-(-N // 64)} iterations/epoch, {EP} epochs")
    print(f"  seconds per epoch ~ {sec_big:.1f} (x N/{n}); {EP} epochs ~ {sec_big * EP / 3600:.1f} h on {device}")
    print(f"  log per epoch: reference pickle {fmt_bytes(pk_big)}, compact ~{fmt_bytes(cp_big)} (synthetic values, "
          f"{pk_big / cp_big:.2f}x smaller), stats {fmt_bytes(sb_big)} ({pk_big / sb_big:.2f}x smaller)")
    print(f"  log for {EP} epochs: reference pickle {fmt_bytes(pk_big * EP)}, compact ~{fmt_bytes(cp_big * EP)}, "
          f"stats {fmt_bytes(sb_big * EP + sb_fixed_big)} ({pk_big / (sb_big + sb_fixed_big / EP):.1f}x smaller); "
          f"in-memory fp16 [E, N, C] for scoring from pickle/compact {fmt_bytes(EP * N * C * 2)}")
    return {"sec_per_epoch": sec, "pickle_per_epoch": pk, "compact_per_epoch": cp, "stats_per_epoch": sb,
            "cifar100_ipc50": {"sec_per_epoch": sec_big, "pickle_per_epoch": pk_big, "compact_per_epoch": cp_big,
                               "stats_per_epoch": sb_big}}


if __name__ == "__main__":
    main(get_args_parser().parse_args())
