"""YOCO defaults shared by the three pipeline steps, and test.py's pruning step (docs/yoco.md;
YOCO reference he-y/you-only-condense-once/argument.py, the condense-key block).

One table of per-condense-key defaults serves ``get_training_dynamics.py`` (data folder, factor, output
folder), ``generate_importance_score.py`` (stop epoch, top-K, score file name) and ``test.py``
(``prune_decoded``: which score file to read), so the writer and the reader always agree. Fixes of the
reference (docs/reference-differences.md#bugs-fixed): B2 (DSA: both sides use ``ep100``), B3 (DREAM reads the requested
dataset), B4 (DREAM + CIFAR-100 gets a score file like every other pair instead of silently skipping pruning).
Extension: mtt/dsa/kip sets at any dataset/IPC when the folder is given explicitly (the reference only has
fixed folders for CIFAR-10 IPC 10, and its paths force ``cifar10``/``ipc10``; here the paths use the real
dataset and IPC, which coincide with the reference for its only case).
"""
import glob
import os
import re
import warnings

import torch

from utils.errors import UserError
from yoco.selection import resolve_pruning_key, select_indices
from yoco.scores import load_score_file

SINGLE_FORMATION = ("mtt", "dsa", "kip")  # stored at factor 1 (YOCO reference utils/img_loader.py, load_data_path;
# docs/algorithms.md#yoco-condensed-inputs)
TOPK = {"idc": 10, "dream": 10, "mtt": 3, "dsa": 3, "kip": 3}  # YOCO reference generate_importance_score.py;
# docs/algorithms.md#el2n-and-lbpe, #pruning-key-resolution
# YOCO reference generate_importance_score.py; docs/algorithms.md#el2n-and-lbpe stop epoch E (LBPE epochs in [0, E),
# file name ``-ep{E}``); dsa = 100 on both sides (B2)
STOP_EPOCH = {"dream": 200, "mtt": 10, "dsa": 100, "kip": 50}
IDC_STOP_EPOCH = {"cifar100": 200, "imagenet": 200}  # others (cifar10 and our 10-class sets): 100
# YOCO reference argument.py; docs/yoco.md: released single-formation sets (CIFAR-10 IPC 10 only)
FIXED_FOLDERS = {"mtt": "mtt/ConvNet_baseline", "dsa": "dsa/res_DSA_CIFAR10_ConvNet_ipc10", "kip": "kip/kip_ipc10"}
IDC_TAG_CIFAR = "conv3in_grad_mse_nd2000_cut_niter2000_factor2_lr0.005_mix_ipc{ipc}"
IDC_TAG_IMAGENET = "resnet10apin_grad_l1_ely10_nd500_cut_factor3_mix_ipc{ipc}"


def default_factor(condense_key, dataset):
    """Multi-formation factor: 1 for mtt/dsa/kip, 3 for ImageNet, else 2 (YOCO reference get_training_dynamics.py;
    docs/algorithms.md#the-dynamics-run, #pruning-key-resolution)."""
    if condense_key in SINGLE_FORMATION:
        return 1
    return 3 if dataset == "imagenet" else 2


def default_stop_epoch(condense_key, dataset):
    if condense_key == "idc":
        return IDC_STOP_EPOCH.get(dataset, 100)
    return STOP_EPOCH[condense_key]


def default_topk(condense_key):
    return TOPK[condense_key]


def dataset_dir(dataset, nclass=10):
    """Folder name of a dataset in the YOCO tree: ``imagenet10`` for ImageNet-10 (YOCO reference argument.py;
    docs/yoco.md)."""
    return f"imagenet{nclass}" if dataset == "imagenet" else dataset


def condensed_dir(condense_key, dataset, ipc, nclass=10):
    """Default condensed-data folder ``raid/condensed_img/...`` (YOCO reference argument.py; docs/yoco.md)."""
    if dataset == "imagenet" and condense_key != "idc":
        raise UserError(f"--condense_key {condense_key} has no ImageNet set (only idc has one: docs/algorithms.md#yoco-condensed-inputs)")
    if condense_key in FIXED_FOLDERS:
        if dataset != "cifar10" or ipc != 10:
            raise UserError(f"the released {condense_key} set is CIFAR-10 IPC 10 only (docs/yoco.md); for "
                            f"{dataset} IPC {ipc} pass the folder explicitly (--custom-data-dir / --test_data_dir)")
        return os.path.join("raid", "condensed_img", FIXED_FOLDERS[condense_key])
    if condense_key == "dream":  # B3 fixed: the requested dataset, not always cifar10
        return os.path.join("raid", "condensed_img", "dream", dataset, f"ipc{ipc}")
    folder = os.path.join("raid", "condensed_img", "idc", dataset_dir(dataset, nclass))
    if dataset != "imagenet":
        return os.path.join(folder, IDC_TAG_CIFAR.format(ipc=ipc))
    return imagenet_idc_dir(folder, ipc)


def imagenet_idc_dir(folder, ipc):
    """The released ImageNet set ``…_cut_factor3_mix_ipc{ipc}`` or, when absent, the one our condense.py
    writes with the reference's tag (``…_cut_factor3_lr0.003_mix_ipc10``, ``…_factor3_bound_lr0.003_mix_ipc20``:
    the reference's condense.py and its pruning code disagree on the name)."""
    released = os.path.join(folder, IDC_TAG_IMAGENET.format(ipc=ipc))
    if os.path.exists(released):
        return released
    ours = sorted(glob.glob(os.path.join(folder, IDC_TAG_IMAGENET.replace("_mix_", "_*_mix_").format(ipc=ipc))))
    if len(ours) > 1:
        raise UserError(f"several condensed ImageNet IPC {ipc} sets match in {folder} ({', '.join(map(os.path.basename, ours))}); "
                        "pass the one to use with --custom-data-dir / --custom_data_dir")
    return ours[0] if ours else released


def dynamics_base(reproduce_exp, condense_key, dataset, nclass=10):
    """The reference ``--base-dir``: ``raid/{reproduce_exp}/dynamics_and_scores/{key}/{dataset}`` (YOCO reference
    get_training_dynamics.py; docs/algorithms.md#the-dynamics-run)."""
    return os.path.join("raid", reproduce_exp, "dynamics_and_scores", condense_key, dataset_dir(dataset, nclass))


def dynamics_dir(reproduce_exp, condense_key, dataset, ipc, nclass=10):
    """``{base dir}/ipc{IPC}``: dynamics, checkpoints and scores of one set (YOCO reference get_training_dynamics.py;
    docs/algorithms.md#the-dynamics-run, #el2n-and-lbpe, #pruning-key-resolution)."""
    return os.path.join(dynamics_base(reproduce_exp, condense_key, dataset, nclass), f"ipc{ipc}")


TD_KINDS = {"pickle": "td-ipc{ipc}.pickle", "compact": "td-ipc{ipc}.pt", "stats": "td-ipc{ipc}-stats.pt"}


def td_name(ipc, kind="pickle"):
    """Dynamics file name: the reference pickle, our lossless compact log, or the statistics file."""
    return TD_KINDS[kind].format(ipc=ipc)


def score_name(ipc, stop_epoch):
    return f"data-score-ipc{ipc}-ep{stop_epoch}.pickle"


def find_td_file(folder, ipc):
    """The reference pickle, else the compact log, else the statistics file; None when none exists."""
    for kind in TD_KINDS:
        p = os.path.join(folder, td_name(ipc, kind))
        if os.path.isfile(p):
            return p
    return None


def ipc_from_folder(path):
    """IPC re-parsed from the folder name: the integer after the last ``ipc`` (YOCO reference argument.py;
    docs/yoco.md), or None."""
    name = os.path.basename(os.path.normpath(str(path)))
    m = re.search(r"ipc(\d+)(?!.*ipc)", name)
    return int(m.group(1)) if m else None


# ----------------------------------------------------------------------------------------------------
# test.py: the pruning step


def pruning_config(args, ipc_f):
    """(``PruneConfig``, top-K) of test.py's YOCO flags for a set of IPC_F ``ipc_f`` (YOCO reference argument.py;
    docs/algorithms.md#pruning-key-resolution); test.py
    resolves it before any work when ``--ipc`` is given, and again on the decoded set."""
    topk = args.topk if "topk" in set(getattr(args, "explicit", ())) else default_topk(args.condense_key)
    cfg = resolve_pruning_key(args.pruning_key, ipc_f=ipc_f, ipc_t=int(args.slct_ipc), topk=topk,
                              dataset=args.dataset, prune_score_ratio=args.prune_score_ratio, ccs_type=args.ccs_type)
    return cfg, topk


def prune_decoded(args, x, y):
    """The IPC_T subset of the decoded set ``(x, y)`` (YOCO reference argument.py; utils/img_loader.py, load_data_path;
    docs/algorithms.md#selection-rules), as test.py's --slct_ipc.

    IPC_F = ``args.ipc`` (derived from N = C·IPC_F·f² when not given), IPC_T = ``args.slct_ipc``; top-K and
    stop epoch per condense key unless given explicitly; score file ``args.score_file`` or
    ``raid/{reproduce_exp}/dynamics_and_scores/{key}/{dataset}/ipc{IPC_F}/data-score-ipc{IPC_F}-ep{E}.pickle``.
    Records what it did in ``args`` (score_file, topk, stop_epoch, pruning) for the results record.
    Randomness (random keys, --strata_random_select) uses the global RNGs seeded by test.py.
    """
    explicit = set(getattr(args, "explicit", ()))
    C, f, N = int(args.nclass), int(args.factor), len(x)
    per = C * f * f
    ipc_f = int(args.ipc) if args.ipc > 0 else N // per
    if N != ipc_f * per:
        raise UserError(f"the decoded set has {N} images, not C*IPC_F*f^2 = {C}*{ipc_f}*{f}^2 = {ipc_f * per}; "
                        "check --ipc and -f/--factor")
    ipc_t, key = int(args.slct_ipc), args.condense_key
    stop = args.stop_epoch if "stop_epoch" in explicit else default_stop_epoch(key, args.dataset)
    cfg, topk = pruning_config(args, ipc_f)
    scores, path = None, ""
    if not cfg.random_selection:
        path = args.score_file or os.path.join(dynamics_dir(args.reproduce_exp, key, args.dataset, ipc_f, C),
                                               score_name(ipc_f, stop))
        scores = load_score_file(path)
        t = scores.get("targets")
        if t is not None and (len(t) != N or not torch.equal(torch.as_tensor(t).long().cpu(), y.long().cpu())):
            raise UserError(f"{path}: its {len(t)} labels do not match the decoded set ({N} images); the score "
                            "file belongs to another condensed set (check --ipc, --condense_key, --score_file)")
    if args.strata_fixed_select:  # B9: the reference flag means *random* within strata
        warnings.warn("--strata_fixed_select selects randomly within CCS strata (reference meaning: yoco B9 in "
                      "docs/reference-differences.md); prefer --strata_random_select", stacklevel=2)
    idx = select_indices(scores, cfg, N=N, C=C, ipc_f=ipc_f, ipc_t=ipc_t, factor=f, ccs_type=args.ccs_type,
                         imagenet=args.dataset == "imagenet", strata_random_select=bool(args.strata_random_select or args.strata_fixed_select))
    args.score_file, args.topk, args.stop_epoch = path, topk, stop
    args.pruning = {"score_key": cfg.score_key, "balance": cfg.balance, "use_hard": cfg.use_hard,
                    "stratified": cfg.stratified, "random_selection": cfg.random_selection,
                    "prune_score_ratio": cfg.prune_score_ratio, "ipc_full": ipc_f, "ipc_target": ipc_t,
                    "n_full": N, "n_selected": int(idx.numel()), "n_distinct": int(idx.unique().numel())}
    return x[idx.to(x.device)], y[idx.to(y.device)]
