"""Condensation driver: IDC gradient matching plus MDC's adaptive subset loss (spec mdc §8, §9).

    python condense_reg.py --reproduce -d cifar10 -f 2 --ipc 10 --adaptive_reg True    # MDC
    python condense_reg.py --reproduce -d cifar10 -f 2 --ipc 10                        # Baseline C
    python condense_reg.py ... --resume                                              # continue

The loop is spec mdc §8.6: a fresh network every max(1, fix_iter) outer iterations (+ ``early``
epochs on real data); the images are clamped once per outer iteration; per inner step and class a
real batch and the decoded synthetic images of the class go through Normalize + batch-shared DiffAug
together, the gradient-matching loss (+ the subset term of the MLS, with the frozen prefix detached)
drives ONE SGD over the whole image tensor (the cross-class momentum leakage is kept); then the
network trains on ``n_data`` real samples. MLS re-selection happens after window iterations.

Reference bugs fixed here (spec mdc §14):
* item 1: a run without ``--adaptive_reg`` no longer crashes at the first save (the regulariser
  file is written only with MDC, and as JSON instead of a pickle);
* item 2: f = 1 with MDC works: the frozen prefix is detached out of place (``grad_match_loss``),
  never by an in-place write into a view of the leaf tensor;
* item 3: ``--adaptive_reg True`` with ipc 1 (or a prefix that cannot fit, spec §9.5) is a one-line
  error at start instead of an assertion at the first selection;
* item 4: no aim: ``--use_aim`` is accepted and ignored; logs go to log.txt and metrics.jsonl;
* item 5: the mix initialisation with ``--load_memory False`` (streaming ImageNet) honours
  ``start_idx`` (``ClassSampler.class_sample``);
* item 8: ``--phase`` no longer shifts the ImageNet classes (it is an mp-only flag, rejected here).
Also item 12 (``_noreg`` folder suffix for Baseline C, see ``utils/condense_io.py``). Kept on purpose:
items 11 (saved data not clamped), 14 (in-run subset evals only when ipc ≤ 10 and f < 3), 15
(it_test from niter) and 18 (DREAM k-means on unnormalised images).
"""
import argparse
import math

import torch.nn as nn

from data.datasets import imagenet_folder, imagenet_load_transform, imagenet_tensors, load_tensors, mean_std
from data.loaders import ClassSampler
from models import define_model
from reg_ipcx import check_mdc_args
from utils.arguments import add_reference_args, tune_lr_img
from utils.augment import DiffAug, Normalize
from utils.condense_loop import Condenser
from utils.condense_io import default_save_dir
from utils.config import UserError, cli, resolve_device, set_seed


def get_args_parser():
    p = argparse.ArgumentParser(description="Dataset condensation: IDC gradient matching + MDC (condense_reg.py)")
    add_reference_args(p)
    p.add_argument("--stop_after", default=-1, type=int,
                   help="debug: stop after this many outer iterations (a save point: data_{it}.pt + resume checkpoint)")
    return p


# ------------------------------------------------------------------------------------------------
# setup


def check_args(args, mp=False):
    """One-line errors for inputs the loop cannot run with (spec mdc §9.5, §14 items 3, 8)."""
    if args.ipc <= 0:
        raise UserError(f"--ipc must be >= 1 (got {args.ipc}): the number of condensed images per class")
    for name in ("lr_img", "lr", "mom_img", "momentum", "weight_decay"):
        v = getattr(args, name)
        if not math.isfinite(v) or v < 0 or (name == "lr_img" and v == 0):
            raise UserError(f"--{name} must be a finite {'positive' if name == 'lr_img' else 'non-negative'} "
                            f"number (got {v})")
    if args.niter < 1 or args.inner_loop < 1 or args.niter * 100 // args.inner_loop < 1:
        raise UserError("--niter and --inner_loop must be >= 1 with niter*100 >= inner_loop")
    if args.slct_type not in ("idc", "dream"):
        raise UserError(f"-s {args.slct_type} is an evaluation source; condensation supports -s idc or dream")
    if args.pt_from >= 0:
        raise UserError("--pt_from (pretrained condensation networks) is not supported; leave it at -1")
    if args.adaptive_reg:
        check_mdc_args(args.ipc, args.factor, args.decode_type, args.batch_syn_max)
        if args.match != "grad":
            raise UserError("--adaptive_reg True needs --match grad (spec mdc §9.2)")
        if args.adaptive_period < 1:
            raise UserError(f"--adaptive_period must be >= 1 (got {args.adaptive_period})")
    if args.slct_type == "dream" and args.interval < 1:
        raise UserError(f"--interval must be >= 1 (got {args.interval})")
    if not mp and (args.nclass_sub > 0 or args.phase >= 0):
        raise UserError("--nclass_sub/--phase are for condense_reg_mp.py (class partitions); "
                        "condense_reg.py condenses every class")


def finalize_args(args):
    """Scale lr_img (spec mdc §1.4) once; the folder tag keeps the un-scaled value."""
    if not hasattr(args, "lr_img_unscaled"):
        args.lr_img_unscaled = args.lr_img
        args.lr_img = tune_lr_img(args, args.lr_img)
    return args


def load_real(args, device):
    """The condensation source as a ``ClassSampler`` (spec mdc §8.5). ImageNet is loaded with
    phase 0 whatever ``--phase`` says (fixes spec mdc §14 item 8)."""
    if args.dataset == "imagenet":
        ds = imagenet_folder(args.imagenet_dir, "train", args.nclass, 0, args.dseed)
        if args.load_memory:
            x, y = imagenet_tensors(ds, args.size)
            return ClassSampler(x, y, args.nclass, args.batch_real, device)
        ds.transform = imagenet_load_transform(args.size)  # streaming: decoded per access
        return ClassSampler(ds, ds.targets, args.nclass, args.batch_real, device)
    x, y = load_tensors(args.dataset, args.data_dir, train=True, download=args.download)
    return ClassSampler(x, y, args.nclass, args.batch_real, device)


def diffaug(args, device):
    """Matching augmentation (batch-shared) and the network-update augmentation (per sample),
    both after Normalize (spec mdc §3 usage sites)."""
    mean, std = mean_std(args.dataset)
    norm = Normalize(mean, std).to(device)
    aug = nn.Sequential(norm, DiffAug(args.aug_type, batch=True))
    ops = args.aug_type.split("_")
    if args.mixup_net == "cut":  # cutout is dropped when the network update uses CutMix
        ops = [o for o in ops if o != "cutout"]
    aug_rand = nn.Sequential(norm, DiffAug("_".join(ops) or "none", batch=False))
    return aug, aug_rand


def make_model_fn(args, device):
    def fn():
        return define_model(args, args.nclass).to(device)
    return fn


def run_condensation(args, classes=None, save_dir=None, noreg=True, save_plain=False, mp=False):
    """Shared entry of condense_reg.py, condense.py and condense_reg_mp.py; returns the Condenser."""
    check_args(args, mp=mp)
    finalize_args(args)
    device = resolve_device(args.device)
    set_seed(args.seed, args.deterministic)
    save_dir = save_dir or default_save_dir(args, noreg=noreg)
    cond = Condenser(args, device, save_dir, load_real=load_real, diffaug=diffaug,
                     model_fn=make_model_fn(args, device), classes=classes, save_plain=save_plain,
                     eval_enabled=not mp)
    cond.run()
    return cond


def main(args):
    return run_condensation(args)


if __name__ == "__main__":
    cli(main, get_args_parser)
