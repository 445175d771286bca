"""Condensation speed (reference he-y/Multisize-Dataset-Condensation/condense_reg.py;
docs/algorithms.md#the-condensation-loop) through the real loop (``condensation.loop.Condenser``), as ratios measured in
one run against named baselines that compute the same thing.

    python benchmarks/condense_step.py [--device auto|cpu|cuda] [--reps 5] [--threads N] [--mls 5]

Setting: fake CIFAR-10 in its real on-disk format (500 training images per class, written to a temporary
folder), the CIFAR preset (``--reproduce``: ConvNet-3 width 128 instance norm, mse, lr_img 5e-3, n_data 2000),
IPC 10, f = 2 (40 decoded images per class), batch_real 64, MDC with the subset term of MLS ``--mls``
(``--mls 0``: plain IDC, no subset term), no frozen prefix.

Paths (all on one ``Condenser``, switched by its attributes, so every path runs the loop's own code):

* ``reference formulation``: the sequential class steps with the reference's separate forward on the MLS
  prefix (``grad_match_loss(fast=False)``), fp32; the path the issue names as the baseline;
* ``default``: today's default, the sequential class steps with the exact split subset path, fp32;
* ``class-batched``: ``--class_batch True`` (condensation/batched.py), fp32;
* ``bf16``, ``bf16 + class-batched``: ``--precision bf16`` (training/precision.py).

Timed, alternating between the paths, ``--reps`` times after one warm-up each: (1) the class updates of one
inner step (all 10 classes); (2) one inner step of the loop (the class updates + the network update over
n_data = 2000 real images); the full preset's outer iteration is inner_loop = 100 such steps, so its time
is 100 × (2). Before timing, every path makes one inner step from one common state and the largest
difference of its images from the default path's is printed, relative to how far that step moved them:
fp32 paths agree up to float rounding, bf16 does not (and is not meant to).
"""
import copy
import json
import os
import statistics
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

from benchmarks.machine import alternate, bench_parser, describe, set_threads, summary  # noqa: E402
from condensation.loop import Condenser  # noqa: E402
from condensation.runner import diffaug, finalize_args, load_real, make_model_fn  # noqa: E402
from condense_reg import get_args_parser  # noqa: E402
from fakedata import make_cifar  # noqa: E402
from cli.arguments import parse_args  # noqa: E402
from utils.config import resolve_device, rng_state, set_rng_state, set_seed, tune_allocator  # noqa: E402
from training.precision import autocast  # noqa: E402

PATHS = {  # name: (fast, class_batch, precision)
    "reference formulation": (False, False, "fp32"),
    "default": (None, False, "fp32"),
    "class-batched": (None, True, "fp32"),
    "bf16": (None, False, "bf16"),
    "bf16 + class-batched": (None, True, "bf16"),
}
INNER_LOOP = 100  # the preset's inner steps per outer iteration
FULL_ITERATIONS = 2000  # --niter 2000 (CIFAR preset) × 100 / inner_loop outer iterations


def build(root, device, mls, width=1.0, n_data=2000):
    args = finalize_args(parse_args(get_args_parser(), [
        "--reproduce", "-d", "cifar10", "--data_dir", root, "--ipc", "10", "-f", "2", "--batch_real", "64",
        "--width", str(width), "--n_data", str(n_data),
        "--adaptive_reg", "True", "--eval_during", "False", "--inner_loop", "1", "--device", str(device),
        "--save_dir", os.path.join(root, "run")]))
    set_seed(0)
    cond = Condenser(args, device, os.path.join(root, "run"), load_real=load_real, diffaug=diffaug,
                     model_fn=make_model_fn(args, device))
    cond.fresh_net()
    f2 = cond.f2
    cond.class_terms = lambda t, r, window: ([mls * f2] if mls else [], 0, False)
    cond.inner_step(0, False, None, [[] for _ in cond.classes])  # a momentum buffer, as in a running loop
    return cond


def use(cond, name):
    fast, batched, precision = PATHS[name]
    cond.fast, cond.class_batch = fast, batched
    cond.amp = lambda: autocast(precision, cond.device)


def class_updates(cond):
    step = cond.batched_inner_step if cond.class_batch else cond.inner_step
    return step(1, False, None, [[] for _ in cond.classes])


def inner_step(cond):
    cond.outer_iteration(1, False)  # inner_loop = 1: the class updates, then the network update


def agreement(cond):
    """One inner step of every path from one common state: max |Δ images| against the default path, relative
    to the largest move of an image value in that step."""
    dev = cond.device
    start = (rng_state(dev), copy.deepcopy(cond.sampler.state_dict()), cond.synset.data.detach().clone(),
             copy.deepcopy(cond.opt_img.state_dict()))
    out = {}
    for name in PATHS:
        set_rng_state(start[0], dev)
        cond.sampler.load_state_dict(copy.deepcopy(start[1]))
        with torch.no_grad():
            cond.synset.data.copy_(start[2])
        cond.opt_img.load_state_dict(copy.deepcopy(start[3]))
        use(cond, name)
        class_updates(cond)
        out[name] = cond.synset.data.detach().clone()
    moved = (out["default"] - start[2]).abs().max().item()
    return {name: (x - out["default"]).abs().max().item() / moved for name, x in out.items()}


def main(argv=None):
    tune_allocator()  # as every script does through cli.arguments.cli
    ap = bench_parser(__doc__, "alternating repetitions (after one warm-up of each path)")
    ap.add_argument("--mls", default=5, type=int, help="the MLS of the subset term (0: none)")
    ap.add_argument("--paths", default=",".join(PATHS), help="comma-separated subset of the paths")
    ap.add_argument("--width", default=1.0, type=float, help="ConvNet width multiplier (1: the preset's 128)")
    ap.add_argument("--n_data", default=2000, type=int, help="real images per network update (the preset's 2000)")
    ap.add_argument("--dry-run", action="store_true", help="check the arguments and exit")
    a = ap.parse_args(argv)
    unknown = [n for n in a.paths.split(",") if n.strip() not in PATHS]
    if unknown:
        ap.error(f"unknown --paths {unknown}; choose from {', '.join(PATHS)}")
    if a.dry_run:
        return None
    set_threads(a.threads)
    device = resolve_device(a.device)
    names = [n.strip() for n in a.paths.split(",")]
    with tempfile.TemporaryDirectory() as root:
        make_cifar(root, 10, n_train=5000, n_test=10)
        cond = build(root, device, a.mls, a.width, a.n_data)
        sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
        agree = agreement(cond)

        def case(name, fn):
            def run():
                use(cond, name)
                fn(cond)
                sync()
            return run

        times = {}
        for what, fn in (("class updates", class_updates), ("inner step", inner_step)):
            cases = {name: case(name, fn) for name in names}
            for run in cases.values():  # warm-up
                run()
            times[what] = alternate(cases, a.reps)
    print(describe(device))
    print(f"fake CIFAR-10, IPC 10, f 2, batch_real 64, n_data {a.n_data}, ConvNet-3 (width {int(128 * a.width)}, "
          "instance norm), mse, "
          f"{'MLS ' + str(a.mls) + ' subset term' if a.mls else 'no subset term'}; {a.reps} alternating repetitions, "
          f"median (range) in seconds; ratio = default path's median / this path's median")
    for what, t in times.items():
        label = "class updates of one inner step (10 classes)" if what == "class updates" else \
            f"one inner step incl. network update (× {INNER_LOOP} = one outer iteration of the preset)"
        print(f"\n{label}")
        print(f"{'path':<24}{'seconds':>24}{'vs default':>12}{'vs reference':>14}{'|Δ images| / step':>20}")
        base, ref = statistics.median(t["default"]), statistics.median(t.get("reference formulation", [np.nan]))
        for name in names:
            m = statistics.median(t[name])
            print(f"{name:<24}{summary(t[name]):>24}{base / m:>11.2f}×{ref / m:>13.2f}×{agree[name]:>20.1e}")
    full = {name: FULL_ITERATIONS * INNER_LOOP * statistics.median(times["inner step"][name]) for name in names}
    print(f"\nextrapolated full preset (CIFAR-10 IPC 10 MDC: {FULL_ITERATIONS} outer iterations × {INNER_LOOP} inner "
          "steps, in-run evaluations not counted): " + "; ".join(f"{n} {h / 3600:.1f} h" for n, h in full.items()))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"machine": describe(device), "mls": a.mls, "times": times, "agreement": agree,
                       "full_preset_seconds": full}, f, indent=1)
    return times, agree


if __name__ == "__main__":
    main()
