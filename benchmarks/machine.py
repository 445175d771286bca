"""What every benchmark prints with its figures, and how it times: the machine (CPU model, ISA flags,
threads, torch) and alternating repetitions summarised as median and range, so that a ratio is always
measured in one run against a named baseline on the same machine."""
import argparse
import os
import platform
import statistics
import time

import torch

ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "asimd", "sve")


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
    except OSError:
        return platform.processor() or platform.machine(), ()
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                  if line.startswith(("model name", "Model", "Hardware"))), platform.machine())
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith(("flags", "Features"))), [])
    return model, tuple(f for f in ISA_FLAGS if f in flags)


def describe(device="cpu"):
    """One line: CPU model, ISA flags, torch threads and CPUs, torch version, and the GPU when used."""
    model, isa = cpu_model()
    line = (f"machine: {model}; ISA {' '.join(isa) or 'none of ' + '/'.join(ISA_FLAGS)}; torch threads "
            f"{torch.get_num_threads()} of {os.cpu_count()} CPUs; torch {torch.__version__}")
    if torch.device(device).type == "cuda":
        line += f"; GPU {torch.cuda.get_device_name(device)}"
    return line


def alternate(cases, reps=5):
    """Time every ``cases[name]()`` ``reps`` times, alternating between the cases (so that drifts of a shared
    machine hit all of them alike); returns {name: [seconds]}."""
    times = {name: [] for name in cases}
    for _ in range(reps):
        for name, fn in cases.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return times


def summary(values):
    """``median (min–max)``."""
    return f"{statistics.median(values):.3g} ({min(values):.3g}–{max(values):.3g})"


def bench_parser(doc, reps_help="alternating repetitions"):
    """The options every timing benchmark shares (``--device``, ``--reps``, ``--threads``, ``--json``); a
    benchmark adds its own and calls ``set_threads(a.threads)`` after parsing."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--reps", type=int, default=5, help=reps_help)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--json", default="", help="also write the figures to this JSON file (benchmarks/gpu_suite.sh)")
    return p


def set_threads(n):
    if n > 0:
        torch.set_num_threads(n)
