"""Peak resident memory (RSS) of an evaluation: today's default against the configuration before issue 12.

Setting (that of benchmarks/eval_epoch.py, plus the real test set): a 400-image CIFAR-shaped condensed
set (CIFAR-10 IPC 10, f = 2, random pixels), ConvNet-3 width 128 instance norm, batch 64, per-sample DSA
``color_crop_flip_scale_rotate`` + CutMix p = 0.5, SGD 0.01/0.9/5e-4, ``--epochs`` epochs with a
validation every ⌊E/4⌋ epochs (4 validations, as ``evaluation.protocol.train_protocol``) on a
10 000-image CIFAR-shaped test set, asked for in batches of 500 (``evaluation.protocol.loaders``).
The test set is a fake CIFAR-10 folder in the real on-disk format (python pickles,
``tests/fakedata.make_cifar``) written to a temporary folder, so the real loading code runs.

Every run is a fresh interpreter (peak RSS is a per-process figure): the child prints its ``VmHWM``
(/proc/self/status) at the end, after the imports and after the test set is loaded, and the minor page
faults per epoch and per validation (``ru_minflt``: the allocator's cost, which a loaded machine does
not blur as it blurs seconds). Cases:

* ``baseline``: the configuration before issue 12, built explicitly here: glibc told never to give
  memory back (``mallopt`` M_MMAP_THRESHOLD = 1 GiB, M_TRIM_THRESHOLD = 2^31 - 1, the old
  ``utils.config.tune_allocator``), and the test set normalised in advance to float32 with the old
  arithmetic (``old_test_tensors``, out of place) in a ``TensorLoader`` with batches of 500 (the old
  ``test_loader``);
* ``default``: what every script does today: ``utils.config.tune_allocator()`` and
  ``data.loaders.test_loader`` (uint8 test set normalised per batch, CPU batches of at most
  ``data.loaders.CPU_TEST_BATCH``).

Both read the file with today's ``data.datasets.load_tensors``. The cases alternate ``--reps`` times
(``benchmarks.machine.alternate``); printed: median (range) per case and the default/baseline ratios of
the medians. Peak RSS varies from run to run by up to ~0.1 GB even with every seed fixed: it depends on
the address-space layout (ASLR), through the heap's fragmentation (with ASLR off, ``setarch -R``, a
case repeats to the kB).

    python benchmarks/eval_memory.py [--reps 5] [--epochs 8] [--try ALLOC[/VAL_BATCH] ...]

``--try`` adds a case with the uint8 test set and another allocator setting: ``glibc`` (its defaults),
``never-trim`` (the old one), ``default`` or ``MMAP_MiB,TRIM_MiB[,ARENAS]`` (``mallopt`` values), and
optionally another CPU validation batch; e.g. ``--try 64,128 --try glibc/500``.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))

N_SET, N_TEST, BATCH, VAL_BATCH = 400, 10000, 64, 500
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8


def status_mb(key):
    """A memory line of /proc/self/status (``VmHWM``: peak resident set size so far; ``VmRSS``: now), in MB
    (10^6 bytes)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024 / 1e6
    return float("nan")


def vm_hwm_mb():
    return status_mb("VmHWM")


def vm_rss_mb():
    return status_mb("VmRSS")


def minor_faults():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def mallopt(mmap_bytes, trim_bytes, arenas=0):
    import ctypes

    libc = ctypes.CDLL("libc.so.6")
    ok = libc.mallopt(M_MMAP_THRESHOLD, int(mmap_bytes)) and libc.mallopt(M_TRIM_THRESHOLD, int(trim_bytes))
    if arenas:
        ok = ok and libc.mallopt(M_ARENA_MAX, int(arenas))
    return bool(ok)


def old_test_tensors(args):
    """The float32 test set as ``data.datasets.test_tensors`` built it before issue 12 (copied here)."""
    import torch

    from data.datasets import load_tensors, mean_std

    x, y = load_tensors(args.dataset, args.data_dir, train=False, download=args.download)
    mean, std = mean_std(args.dataset)
    x = x.float().div_(255)
    x = (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    return x, y


def child(case, data_dir, epochs):
    """One evaluation in this process; prints one JSON line."""
    import torch

    from utils.config import set_seed, tune_allocator  # imports torch: the allocator is set after it, as in cli()

    if case["allocator"] == "never-trim":
        mallopt(1 << 30, (1 << 31) - 1)
    elif case["allocator"] == "default":
        tune_allocator()
    elif case["allocator"] != "glibc":
        mmap_mib, trim_mib, *arenas = case["allocator"].split(",")
        mallopt(float(mmap_mib) * (1 << 20), float(trim_mib) * (1 << 20), *map(int, arenas))

    from types import SimpleNamespace

    import data.loaders as loaders
    from data.datasets import mean_std
    from data.loaders import TensorLoader, test_loader
    from models import create_model
    from training.augment import DiffAug, Normalize
    from training.epochs import evaluate, train_one_epoch

    hwm_import = vm_hwm_mb()
    dev = torch.device("cpu")
    set_seed(0)  # python, numpy (CutMix draws) and torch: every run of a case allocates alike
    args = SimpleNamespace(dataset="cifar10", data_dir=data_dir, download=False)
    x, y = torch.rand(N_SET, 3, 32, 32), torch.arange(10).repeat_interleave(N_SET // 10)
    train = TensorLoader(x, y, BATCH, True, dev, transform=Normalize(*mean_std("cifar10")))
    if case["test_set"] == "float32":  # the test_loader before issue 12
        val = TensorLoader(*old_test_tensors(args), VAL_BATCH, False, dev)
    else:
        if case.get("val_batch"):
            loaders.CPU_TEST_BATCH = case["val_batch"]
        val = test_loader(args, dev, VAL_BATCH)
    hwm_loaders, rss_loaders = vm_hwm_mb(), vm_rss_mb()
    model = create_model("convnet", nclass=10, nch=3, size=32, depth=3, width=1.0, norm_type="instance").to(dev)
    opt = torch.optim.SGD(model.parameters(), 0.01, momentum=0.9, weight_decay=5e-4)
    aug = DiffAug("color_crop_flip_scale_rotate", batch=False)
    freq = max(1, epochs // 4)
    epoch_s, val_s, epoch_flt, val_flt = [], [], [], []
    for epoch in range(1, epochs + 1):
        t, f = time.perf_counter(), minor_faults()
        train_one_epoch(model, train, opt, aug=aug, mixup="cut", mix_p=0.5)
        epoch_s.append(time.perf_counter() - t)
        epoch_flt.append(minor_faults() - f)
        if epoch == 1:
            hwm_epoch1 = vm_hwm_mb()
        if epoch % freq == 0 or epoch == epochs:
            t, f = time.perf_counter(), minor_faults()
            evaluate(model, val)
            val_s.append(time.perf_counter() - t)
            val_flt.append(minor_faults() - f)
            if len(val_s) == 1:
                hwm_val1 = vm_hwm_mb()
    print(json.dumps({"hwm_mb": vm_hwm_mb(), "hwm_import_mb": hwm_import, "hwm_loaders_mb": hwm_loaders,
                      "rss_loaders_mb": rss_loaders, "hwm_epoch1_mb": hwm_epoch1, "hwm_val1_mb": hwm_val1,
                      "epoch_s": statistics.median(epoch_s[1:] or epoch_s), "val_s": statistics.median(val_s),
                      "epoch_faults": statistics.median(epoch_flt[1:] or epoch_flt),
                      "val_faults": statistics.median(val_flt),
                      "test_dtype": str(val.images.dtype), "val_batch": val.batch_size}))


def run_child(case, data_dir, epochs):
    env = dict(os.environ, TQDM_DISABLE="1")
    p = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", json.dumps(case),
                        "--data_dir", data_dir, "--epochs", str(epochs)],
                       capture_output=True, text=True, env=env, cwd=ROOT)
    if p.returncode != 0:
        raise SystemExit(f"child {case} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=8, help="training epochs per run (validation every E//4)")
    ap.add_argument("--try", dest="tries", action="append", default=[], metavar="ALLOC[/VAL_BATCH]",
                    help="an extra case with the uint8 test set: glibc, never-trim, default or MMAP_MiB,TRIM_MiB[,ARENAS]"
                         " (mallopt values), optionally another CPU validation batch")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--data_dir", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(json.loads(a.child), a.data_dir, a.epochs)

    import torch

    from fakedata import make_cifar
    from machine import alternate, describe, summary

    cases = {"baseline": {"allocator": "never-trim", "test_set": "float32"},
             "default": {"allocator": "default", "test_set": "uint8"}}
    for t in a.tries:
        alloc, _, vb = t.partition("/")
        cases[f"try {t}"] = {"allocator": alloc, "test_set": "uint8", "val_batch": int(vb) if vb else 0}
    results = {name: [] for name in cases}
    with tempfile.TemporaryDirectory() as d:
        make_cifar(d, 10, n_train=50, n_test=N_TEST)
        run_child(cases["default"], d, 1)  # warm the page cache and the interpreter's files
        alternate({name: (lambda name=name: results[name].append(run_child(cases[name], d, a.epochs)))
                   for name in cases}, a.reps)
    print(describe("cpu"))
    print(f"evaluation of a {N_SET}-image CIFAR-shaped set: ConvNet-3 w128 instance norm, batch {BATCH}, DSA + CutMix, "
          f"{a.epochs} epochs, {len(range(0, a.epochs, max(1, a.epochs // 4)))} validations on {N_TEST} fake "
          f"CIFAR-10 test images (asked for in batches of {VAL_BATCH}); {a.reps} fresh processes per case, alternated "
          f"(torch threads: {torch.get_num_threads()}); MB = 10^6 bytes; median (min–max)")
    cols = [("peak RSS MB", "hwm_mb", mb), ("after imports", "hwm_import_mb", mb),
            ("after test set", "hwm_loaders_mb", mb), ("s/epoch", "epoch_s", summary),
            ("s/validation", "val_s", summary), ("faults/epoch", "epoch_faults", count),
            ("faults/validation", "val_faults", count)]
    print(f"{'case':<16}" + "".join(f"{c[0]:>22}" for c in cols) + "  test set")
    for name, rs in results.items():
        print(f"{name:<16}" + "".join(f"{fmt([r[k] for r in rs]):>22}" for _, k, fmt in cols)
              + f"  {rs[0]['test_dtype'].replace('torch.', '')}, batches of {rs[0]['val_batch']}")
    med = {name: {k: statistics.median(r[k] for r in rs) for k in ("hwm_mb", "epoch_s", "val_s")}
           for name, rs in results.items()}
    for name in results:
        if name != "baseline":
            print(f"{name} / baseline: peak RSS {med[name]['hwm_mb'] / med['baseline']['hwm_mb']:.2f}, "
                  f"s/epoch {med[name]['epoch_s'] / med['baseline']['epoch_s']:.2f}, "
                  f"s/validation {med[name]['val_s'] / med['baseline']['val_s']:.2f}")


def mb(values):
    return f"{statistics.median(values):.0f} ({min(values):.0f}–{max(values):.0f})"


def count(values):
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}–{max(values):,.0f})"


if __name__ == "__main__":
    main()
