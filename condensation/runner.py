"""The condensation run shared by ``condense_reg.py``, ``condense.py`` and ``condense_reg_mp.py``
(reference he-y/Multisize-Dataset-Condensation/condense_reg.py; docs/algorithms.md#the-condensation-loop): argument
checks, the lr_img scaling, the real-data sampler, the two augmentations and
the model factory, handed to ``condensation.loop.Condenser``. The scripts differ only in the folder,
the classes they condense and whether the adaptive subset loss may be on.
"""
import functools

import torch.nn as nn

from condensation.loop import Condenser
from condensation.run_files import default_save_dir
from data.datasets import imagenet_folder, imagenet_load_transform, imagenet_tensors, load_tensors, mean_std
from data.loaders import ClassSampler
from models import define_model
from condensation.mls import check_switches
from condensation.mls.regularizer import check_mdc_args
from training.augment import DiffAug, Normalize
from utils.config import resolve_device, set_seed
from utils.errors import UserError


# ------------------------------------------------------------------------------------------------
# setup


def check_args(args, mp=False):
    """One-line errors for inputs the loop cannot run with (mdc 3 and 8 in docs/reference-differences.md#bugs-fixed;
    docs/algorithms.md#mdc-preconditions); the range of every
    single number is declared with its option and checked by ``cli.arguments.parse_args``."""
    if args.niter * 100 // args.inner_loop < 1:
        raise UserError(f"--niter {args.niter} with --inner_loop {args.inner_loop} makes no outer iteration "
                        "(niter*100 // inner_loop of them): pass niter*100 >= inner_loop")
    if args.slct_type not in ("idc", "dream"):
        raise UserError(f"-s {args.slct_type} is an evaluation source; condensation supports -s idc or dream")
    if args.adaptive_reg:
        check_mdc_args(args.ipc, args.factor, args.decode_type, args.batch_syn_max)
        if args.match != "grad":
            raise UserError("--adaptive_reg True needs --match grad (docs/algorithms.md#mdc-preconditions)")
    check_switches(args)  # the MLS switches and hyper-parameters need --adaptive_reg True (condensation/mls)
    if not mp and getattr(args, "global_mls", False):
        raise UserError("--global_mls is for condense_reg_mp.py under torchrun; condense_reg.py makes one global MLS "
                        "decision already")
    if getattr(args, "coast", "replay") != "replay" and not (mp and args.exact):
        raise UserError("--coast closed is for condense_reg_mp.py --exact True under torchrun (the other ranks' "
                        "image steps); leave it at replay")
    if args.exact and args.slct_type == "dream":
        raise UserError("--exact True supports -s idc: DREAM's k-means batches are not drawn per class")
    if not mp and (args.nclass_sub > 0 or args.phase >= 0):
        raise UserError("--nclass_sub/--phase are for condense_reg_mp.py (class partitions); "
                        "condense_reg.py condenses every class")


def tune_lr_img(args, lr_img):
    """lr_img · (ipc/10) · (size/base)² (MDC reference argument.py, tune_lr_img; docs/algorithms.md#derived-settings):
    linear in ipc in practice."""
    # the reference tests the dataset name: only "mnist" has base 28, Fashion (28 px) keeps base 32
    base = {"imagenet": 224, "mnist": 28}.get(args.dataset, 32)
    return lr_img * (args.ipc / 10) * (args.size / base) ** 2


def finalize_args(args):
    """Scale lr_img (MDC reference argument.py, tune_lr_img; docs/algorithms.md#derived-settings) once; the folder tag
    keeps the un-scaled value."""
    if not hasattr(args, "lr_img_unscaled"):
        args.lr_img_unscaled = args.lr_img
        args.lr_img = tune_lr_img(args, args.lr_img)
    return args


def load_real(args, device, drop_last=False):
    """The condensation source as a ``ClassSampler`` (MDC reference condense_reg.py, load_resized_data). ImageNet is
    loaded with
    phase 0 whatever ``--phase`` says (fixes mdc 8 in docs/reference-differences.md#bugs-fixed). ``drop_last``:
    all-class batches drop the partial batch of each pass (``condense_reg_mp.py``, as its reference loader; not with
    ``--exact True``, whose network is the single-process run's)."""
    if args.dataset == "imagenet":
        ds = imagenet_folder(args.imagenet_dir, "train", args.nclass, 0, args.dseed)
        if args.load_memory:
            x, y = imagenet_tensors(ds, args.size)
            return ClassSampler(x, y, args.nclass, args.batch_real, device, drop_last)
        ds.transform = imagenet_load_transform(args.size)  # streaming: decoded per access
        return ClassSampler(ds, ds.targets, args.nclass, args.batch_real, device, drop_last, workers=args.workers)
    x, y = load_tensors(args.dataset, args.data_dir, train=True, download=args.download)
    return ClassSampler(x, y, args.nclass, args.batch_real, device, drop_last)


def diffaug(args, device):
    """Matching augmentation (batch-shared) and the network-update augmentation (per sample),
    both after Normalize (MDC reference condense_reg.py, diffaug; docs/algorithms.md#augmentation)."""
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


def run_condensation(args, classes=None, save_dir=None, noreg=True, save_plain=False, mp=False, device=None,
                     world=None):
    """Shared entry of condense_reg.py, condense.py and condense_reg_mp.py; returns the Condenser.
    ``device``: the rank's device under torchrun; ``world``: the ``World`` the partitions step together in
    (``--global_mls``/``--exact``), else None."""
    check_args(args, mp=mp)
    finalize_args(args)
    device = device or resolve_device(args.device)
    set_seed(args.seed, args.deterministic)
    save_dir = save_dir or default_save_dir(args, noreg=noreg)
    drop_last = mp and not args.exact
    cond = Condenser(args, device, save_dir, load_real=functools.partial(load_real, drop_last=drop_last),
                     diffaug=diffaug, model_fn=make_model_fn(args, device), classes=classes, save_plain=save_plain,
                     eval_enabled=not mp, world=world)
    try:
        cond.run()
        cond.finish_tracking()
    finally:
        cond.release()  # the run folder is free for the next process (utils/runlock.py)
    return cond
