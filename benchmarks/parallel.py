"""Time per outer iteration of class-partitioned condensation with 1 and 2 torchrun ranks.

    python benchmarks/parallel.py [--device cpu|cuda] [--repeats 3] [--iters 3] [--threads_per_rank 1]

What runs: ``torchrun --standalone --nproc_per_node R condense_reg_mp.py`` on CIFAR-shaped data (10
classes of 3×32×32 random images in CIFAR-10's on-disk format, written once to a temporary folder),
IPC 2, factor 2, MDC (``--adaptive_reg True``), ConvNet-3 of ``--width``, ``--inner_loop`` inner steps,
stopped after ``--iters`` outer iterations (``--stop_after``). Two settings, each timed with 1 and 2 ranks:

* ``independent`` (the default mode): 2 partitions of 5 classes. One rank condenses them one after the
  other (the baseline: what one process does with ``--phase 0`` then ``--phase 1``), two ranks at once.
* ``exact`` (``--exact True``): the baseline is 1 rank holding all 10 classes (``--nclass_sub 10``, the
  single-process run), against 2 ranks of 5 classes each. Every rank trains the same network, so the
  network updates are not divided by the ranks.

Figure: seconds per outer iteration of the job = the slowest rank's summed loop time (``seconds`` of the
last ``loss`` record in each partition's ``metrics.jsonl``) / iterations; process start-up and data
loading are left out and printed separately as the job's wall time. The repeats alternate between the
cases (``benchmarks/machine.py``); printed: median (min–max) and the ratio 1 rank / 2 ranks per repeat.
Every rank uses ``--threads_per_rank`` torch threads (torchrun's default is 1), so 2 ranks use twice the
cores of 1: on the CPU this measures what a second core buys, on GPUs what a second GPU buys.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from benchmarks.machine import describe, summary  # noqa: E402


def job_args(a, data_dir):
    return ["-d", "cifar10", "--data_dir", data_dir, "--device", a.device, "--width", str(a.width), "--niter", "1",
            "--inner_loop", str(a.inner_loop), "--n_data", "64", "--batch_real", "32", "--ipc", "2", "-f", "2",
            "--adaptive_reg", "True", "--adaptive_period", "2", "--stop_after", str(a.iters)]


def loop_seconds(folder):
    with open(os.path.join(folder, "metrics.jsonl")) as f:
        recs = [r for r in map(json.loads, f) if r["type"] == "loss"]
    return recs[-1]["seconds"]


def run_case(a, data_dir, work, ranks, k, exact, tag):
    """One torchrun job; returns (seconds per outer iteration of the slowest rank, wall seconds)."""
    out = os.path.join(work, tag)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks),
           os.path.join(ROOT, "condense_reg_mp.py"), *job_args(a, data_dir), "--nclass_sub", str(k),
           "--save_dir", out] + (["--exact", "True"] if exact else [])
    env = dict(os.environ, TQDM_DISABLE="1", PYTHONPATH=ROOT, OMP_NUM_THREADS=str(a.threads_per_rank))
    t = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode:
        sys.exit(f"error: the {tag} job failed ({p.returncode}):\n{p.stderr[-2000:]}")
    per_rank = [0.0] * ranks
    for ph in range(10 // k):
        per_rank[ph % ranks] += loop_seconds(f"{out}_{k}_phase{ph}")
    return max(per_rank) / a.iters, wall


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--repeats", default=3, type=int)
    ap.add_argument("--iters", default=3, type=int, help="outer iterations timed per job")
    ap.add_argument("--inner_loop", default=10, type=int)
    ap.add_argument("--width", default=0.5, type=float, help="ConvNet width multiplier (1: 128 channels)")
    ap.add_argument("--threads_per_rank", default=1, type=int)
    ap.add_argument("--dry-run", action="store_true", help="check the arguments and exit")
    a = ap.parse_args(argv)
    if a.dry_run:
        return None
    import torch

    if a.device == "cuda" and torch.cuda.device_count() < 2:
        sys.exit(f"error: 2 ranks on CUDA need 2 GPUs ({torch.cuda.device_count()} visible); run with --device cpu")
    torch.set_num_threads(a.threads_per_rank)
    from fakedata import make_cifar

    with tempfile.TemporaryDirectory() as work:
        data_dir = os.path.join(work, "data")
        make_cifar(data_dir, 10, n_train=2000, n_test=100)
        cases = {}
        for setting, exact, k1 in (("independent", False, 5), ("exact", True, 10)):
            for ranks, k in ((1, k1), (2, 5)):
                name = f"{setting}, {ranks} rank{'s' * (ranks > 1)}"
                cases[name] = (ranks, k, exact, setting)
        res = {name: [] for name in cases}
        for rep in range(a.repeats):  # alternate: a drift of the machine hits every case alike
            for name, (ranks, k, exact, setting) in cases.items():
                res[name].append(run_case(a, data_dir, work, ranks, k, exact, f"{setting}{ranks}_{rep}"))
    print(describe(a.device) + f"; {a.threads_per_rank} thread(s) per rank")
    print(f"condense_reg_mp.py: CIFAR-shaped 10 classes, IPC 2, factor 2, MDC, ConvNet-3 width {a.width}, "
          f"inner_loop {a.inner_loop}, {a.iters} outer iterations per job, {a.repeats} alternating repeats")
    print(f"{'case':<24}{'s / outer iteration':>26}{'job wall s':>24}")
    for name, vals in res.items():
        print(f"{name:<24}{summary([v[0] for v in vals]):>26}{summary([v[1] for v in vals]):>24}")
    for setting in ("independent", "exact"):
        one, two = res[f"{setting}, 1 rank"], res[f"{setting}, 2 ranks"]
        ratios = [x[0] / y[0] for x, y in zip(one, two)]
        print(f"speed-up of 2 ranks over 1 ({setting}): {statistics.median(ratios):.2f}x "
              f"({min(ratios):.2f}-{max(ratios):.2f}) per outer iteration")


if __name__ == "__main__":
    main()
