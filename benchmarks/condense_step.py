"""Time the steps of the condensation loop (spec mdc §8.6) on CIFAR-shaped random data.

    python benchmarks/condense_step.py [--device auto|cpu|cuda] [--repeats 5] [--threads N]

Setting: 3×32×32 images, 10 classes, IPC 10, factor 2 (40 decoded images per class), batch_real 64,
mse, ConvNet-3 (width 128, instance norm), matching augmentation color_crop_cutout. Timed (median of
``--repeats`` after one warm-up): one class update (``condensation.loop.class_update``: augment,
gradient matching, image SGD step) without a subset term and with MLS = 1, 5, 9; the feature-distance
pass of a window iteration (9 prefixes); one network update with n_data = 2000 (32 batches of 64).
Each class update runs with the exact split path (``fast=None``, the loop's default) and with the
reference-style separate forward on the prefix (``fast=False``).

FLOP counting (``utils/flops.py``: forward FLOPs F(n) of n images, conv/linear MACs×2, fwd+bwd = 3F):
* real batch: forward + parameter gradients = 3·F(64);
* synthetic batch with ``create_graph`` and the backward of the matching loss through it (double
  backward): the second-order pass is counted as 2× the first-order forward+backward, so 3F + 6F =
  9·F(n) for n synthetic images;
* the work executed: split path 9·F(40) whatever the MLS; reference path 9·F(40) + 9·F(4x) for MLS x;
* feature pass: F(64 + 40) (no_grad forward); network update: 32 × 3·F(64).
DiffAug, norms and activations are not counted, so the GFLOP/s are a lower bound.
"""
import argparse
import os
import platform
import statistics
import sys
import time
import types

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from condensation.runner import diffaug  # noqa: E402
from data.loaders import ClassSampler  # noqa: E402
from models import create_model  # noqa: E402
from condensation.loop import class_update, network_update  # noqa: E402
from utils.config import resolve_device, tune_allocator  # noqa: E402
from utils.flops import count_flops  # noqa: E402
from condensation.matchloss import feature_distances, matched_params  # noqa: E402

# measured on this project's development CPU with the reference formulation (seconds)
REFERENCE = {"no subset": 0.48, "MLS 1": 0.52, "MLS 5": 0.64, "MLS 9": 0.82, "feature pass": 0.09,
             "network update": 4.7}
NCLASS, IPC, FACTOR, BATCH_REAL, N_DATA = 10, 10, 2, 64, 2000


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip() + f" ({torch.get_num_threads()} threads)"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def timed(fn, device, repeats):
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def main(argv=None):
    tune_allocator()  # as every script does through utils.arguments.cli
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", default=5, type=int)
    ap.add_argument("--threads", default=0, type=int, help="torch CPU threads (0: torch's default)")
    a = ap.parse_args(argv)
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    torch.manual_seed(0)
    args = types.SimpleNamespace(dataset="cifar10", aug_type="color_crop_cutout", mixup_net="cut", net_epoch=1,
                                 mix_p=0.5, beta=1.0, n_data=N_DATA, match="grad", metric="mse")
    model = create_model("convnet", nclass=NCLASS, depth=3, width=1.0, norm_type="instance").to(device).train()
    params = matched_params(model)
    aug, aug_rand = diffaug(args, device)
    n_syn = IPC * FACTOR ** 2
    syn = torch.rand(n_syn, 3, 32, 32, device=device, requires_grad=True)  # decoded class batch stand-in
    y_syn = torch.zeros(n_syn, dtype=torch.long, device=device)
    opt_img = torch.optim.SGD([syn], lr=5e-3, momentum=0.5)
    real = torch.rand(BATCH_REAL, 3, 32, 32, device=device)
    y_real = torch.zeros(BATCH_REAL, dtype=torch.long, device=device)
    pool = torch.randint(0, 256, (5000, 3, 32, 32), dtype=torch.uint8)
    sampler = ClassSampler(pool, torch.arange(5000) % NCLASS, NCLASS, BATCH_REAL, device)
    opt_net = torch.optim.SGD(model.parameters(), 0.01, momentum=0.9, weight_decay=5e-4)

    def F(n):
        return count_flops(model, (n, 3, 32, 32))

    def update(subsets, fast):
        return lambda: class_update(model, params, aug, opt_img, real, y_real, syn, y_syn, metric="mse",
                                    subsets=subsets, fast=fast)

    prefixes = [x * FACTOR ** 2 for x in range(1, IPC)]
    with torch.no_grad():
        a_all = aug(torch.cat([real, syn.detach()]))

    rows = []  # (name, path, seconds, flops)
    base = 3 * F(BATCH_REAL) + 9 * F(n_syn)
    for fast, path in ((None, "split (default)"), (False, "reference-style")):
        rows.append(("no subset", path, timed(update([], fast), device, a.repeats), base))
        for x in (1, 5, 9):
            extra = 0 if fast is None else 9 * F(x * FACTOR ** 2)
            rows.append((f"MLS {x}", path, timed(update([x * FACTOR ** 2], fast), device, a.repeats), base + extra))
    rows.append(("feature pass", "-", timed(lambda: feature_distances(model, a_all[:BATCH_REAL], a_all[BATCH_REAL:],
                                                                   prefixes, 2), device, a.repeats),
                 F(BATCH_REAL + n_syn)))
    n_batches = -(-N_DATA // BATCH_REAL)
    rows.append(("network update", "-", timed(lambda: network_update(model, opt_net, sampler, aug_rand, args),
                                              device, max(1, a.repeats // 2)), n_batches * 3 * F(BATCH_REAL)))

    print(f"device: {device_name(device)}  (torch {torch.__version__})")
    print(f"CIFAR-shaped random data: {NCLASS} classes, IPC {IPC}, factor {FACTOR}, batch_real {BATCH_REAL}, "
          f"ConvNet-3, mse; median of {a.repeats}")
    print(f"{'step':<16}{'path':<18}{'seconds':>10}{'GFLOP':>10}{'GFLOP/s':>10}{'reference s':>13}")
    for name, path, sec, flops in rows:
        ref = REFERENCE.get(name)
        print(f"{name:<16}{path:<18}{sec:>10.4f}{flops / 1e9:>10.2f}{flops / 1e9 / sec:>10.1f}"
              f"{(f'{ref:.2f}' if ref is not None else '-'):>13}")
    return rows


if __name__ == "__main__":
    main()
