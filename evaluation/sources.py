"""What ``test.py`` evaluates (reference he-y/Multisize-Dataset-Condensation/test.py; reference
he-y/you-only-condense-once/argument.py; docs/algorithms.md#evaluation-protocol; docs/yoco.md): the argument checks and
the training
set of every test type and source, decoded and, for YOCO, pruned.

Test types: ``other`` (the whole set), ``cx_cy`` (the IPC-y prefix of an IPC-N set: the first y·f²
decoded images per class; Baseline C and MDC rows), ``baseline_b`` (N separate IPC-1 runs). Sources
(``-s``): a condensed folder or ``.pt`` (idc, dream; ``idc_cat`` merges class-partitioned runs),
``random`` (the first ipc real images per class), and pre-normalised dc/dsa/kip/mtt tensors.
"""
import os
import sys

import torch

from data.condensed import class_prefix, load_decoded
from data.datasets import (dataset_folders, first_per_class, held_out_of, imagenet_folder, imagenet_tensors,
                           load_tensors)
from data.partitions import describe_parts, resolve_parts
from cli.arguments import ipc_epoch
from evaluation.protocol import check_eval_nets
from evaluation.records import TEST_TYPES, check_results_file
from utils.errors import UserError
from utils.files import check_apart, check_output_file
from yoco.selection import check_pruning_key
from yoco.pruning import condensed_dir, default_factor, prune_decoded, pruning_config

PRE_NORMALISED = ("dc", "dsa", "kip", "mtt")  # MDC's -s loaders: stored normalised, no Normalize


def file_format(args):
    """YOCO's --condense_key, else MDC's -s (dsa/kip/mtt files have their own layouts; DC's result files
    are DSA's dict layout, which the reference's test.py reads for both)."""
    if args.condense_key != "idc":
        return args.condense_key
    if args.slct_type == "dc":
        return "dsa"
    return args.slct_type if args.slct_type in ("dsa", "kip", "mtt") else "idc"


def source_path(args):
    if args.test_data_dir:
        return args.test_data_dir
    if args.custom_data_dir:
        return args.custom_data_dir
    if args.slct_ipc > 0:  # YOCO: the condensed set of --condense_key (YOCO reference argument.py; docs/yoco.md)
        if args.ipc <= 0:
            raise UserError("--slct_ipc needs --ipc IPC_F (or --test_data_dir <condensed set>)")
        return condensed_dir(args.condense_key, args.dataset, args.ipc, args.nclass)
    raise UserError("no condensed set given; pass --test_data_dir <folder or .pt> (or -s random)")


def read_paths(args, folder_by_files=False):
    """What an evaluation reads, as ``[(path, what)]`` for ``utils.files.check_apart``: the condensed set (a
    file, or a folder), the real dataset for ``-s random``, the score file and the presets.
    ``folder_by_files``: a set folder counts by the files the loaders read (for the results file, written next
    to the set by default)."""
    if args.slct_type == "random":
        return dataset_folders(args)
    base = source_path(args)
    theirs = [(args.score_file, "--score_file"), (args.presets if args.reproduce else "", "--presets")]
    if not (folder_by_files and os.path.isdir(base)):
        return [(base, "the condensed set"), *theirs]
    kept = [n for n in os.listdir(base) if n.endswith(".pt")]  # data_*.pt, data.pt, images/labels_best.pt
    return [(os.path.join(base, n), "a file of the condensed set") for n in kept] + theirs


def check_outputs(args, results_file):
    """test.py's outputs, before any work: writable, and none of them is (or lies inside) an input."""
    check_apart(results_file, "--results_file", read_paths(args, folder_by_files=True))
    check_results_file(results_file)
    if args.save_subset:
        check_output_file(args.save_subset, "--save_subset file", "--save_subset")
        check_apart(args.save_subset, "--save_subset", read_paths(args) + [(results_file, "the results file")])


def partition_paths(args, base, log=print):
    """``-s idc_cat``: the data files of the class-partitioned runs ``{base}_{k}_phase{i}`` to concatenate
    (MDC reference condense_reg_mp.py; docs/algorithms.md#class-partitioned-condensation), chosen and checked by
    ``data.partitions.resolve_parts``: a missing partition, or
    partitions of different iterations (an interrupted phase's older file) or settings are refused unless
    ``--allow_mismatch True``. Logs the file and iteration of every partition (one line)."""
    parts = resolve_parts(base, args.nclass_sub, args.nclass, args.niter, getattr(args, "allow_mismatch", False),
                          strict="niter" in args.explicit)
    log(f"idc_cat: {describe_parts(parts)}")
    return [p.file for p in parts]


def baseline_b(args, base):
    """N IPC-1 runs ``base``, ``base_idx_1`` … concatenated; the first y runs (MDC reference test.py, test_baseline_b;
    docs/algorithms.md#evaluation-protocol)."""
    xs, ys = [], []
    for k in range(args.ipcy):
        folder = base if k == 0 else f"{base}_idx_{k}"
        if not os.path.exists(folder):
            raise UserError(f"baseline_b needs the run of condense_reg.py --start_idx {k} at {folder}")
        d, dy, _ = load_decoded(folder, args.nclass, args.nch, args.size, args.factor, niter=args.niter, ipc=1,
                                strict="niter" in args.explicit,
                                ipc_fix="baseline_b evaluates separate IPC-1 runs (one per --start_idx): point "
                                        "--test_data_dir at the --start_idx 0 run of --ipc 1")
        xs.append(d)
        ys.append(dy)
    x, y = torch.cat(xs), torch.cat(ys)
    order = torch.sort(y, stable=True).indices  # class-major like every other set we export
    return x[order], y[order]


def build_train_set(args):
    """The (decoded) training images in [0, 1] (or pre-normalised), labels, and where they came from."""
    if args.slct_type == "random":
        return real_subset(args)
    base = source_path(args)
    if args.test_type == "baseline_b":
        return (*baseline_b(args, base), base)
    # test.py honours only the multi decode; bound falls back to single (MDC reference test.py, load_data_path and
    # decode)
    dtype = "multi" if args.decode_type == "multi" else "single"
    if args.slct_type == "idc_cat":
        paths, key, pinned = partition_paths(args, base), "idc", None
    else:
        paths, key = base, file_format(args)
        pinned = args.ipc if args.ipc > 0 and (args.test_type == "cx_cy" or "ipc" in args.explicit) else None
    # MDC's -s dc|dsa evaluate experiment 3 of the result dict (its reference's exp_idx); YOCO's dsa key reads 0
    experiment = 3 if key == "dsa" and args.condense_key == "idc" else 0
    x, y, per = load_decoded(paths, args.nclass, args.nch, args.size, args.factor, condense_key=key,
                             niter=args.niter, ipc=pinned, decode_type=dtype, where=base, experiment=experiment,
                             strict="niter" in args.explicit)
    if args.test_type == "cx_cy":
        n_per = len(x) // args.nclass
        keep = n_per * args.ipcy // per  # = ipcy·f² for single decoding
        x, y = class_prefix(x, y, args.nclass, n_per, keep)
    if args.slct_ipc > 0:
        x, y = prune_decoded(args, x, y)  # YOCO selection (YOCO reference argument.py; utils/img_loader.py,
        # load_data_path; docs/algorithms.md#selection-rules)
    return x, y, base


def real_subset(args):
    """``-s random``, the real-data subset baseline: the first ``--ipc`` training images per class in dataset order.
    With ``--val_per_class`` the held-out images (``data.datasets.held_out_of``) are skipped before the choice, so
    a held-out image among a class's first ``--ipc`` is replaced by the class's next one
    (docs/evaluating.md#held-out-validation); without it the choice is the reference's."""
    if args.ipc <= 0:
        raise UserError("-s random needs --ipc > 0")
    what = f"first {args.ipc} per class" + (f", {args.val_per_class} held out" if args.val_per_class > 0 else "")
    if args.dataset == "imagenet":
        exclude = held_out_of(args, lambda: imagenet_folder(args.imagenet_dir, "train", args.nclass, args.phase,
                                                            args.dseed).targets)
        ds = imagenet_folder(args.imagenet_dir, "train", args.nclass, args.phase, args.dseed, ipc=args.ipc,
                             exclude=exclude)
        x, y = imagenet_tensors(ds, args.size)
        return x.float() / 255, y, f"{args.imagenet_dir}/train ({what})"
    x, y = load_tensors(args.dataset, args.data_dir, train=True, download=args.download)
    x, y = first_per_class(x, y, args.nclass, args.ipc, exclude=held_out_of(args, lambda: y))
    return x.float() / 255, y, f"{args.dataset} train ({what})"


# options that act only together with another setting: (dests, is it set?, what to add); given explicitly
# without it they would be ignored, so they are refused
ONLY_WITH = (
    (("ipcy", "prefix_epochs"), lambda a: a.test_type in ("cx_cy", "baseline_b"),
     "add --test_type cx_cy (the IPC-y prefix of the set) or baseline_b"),
    (("pruning_key", "score_file", "topk", "stop_epoch", "prune_score_ratio", "ccs_type", "strata_fixed_select",
      "strata_random_select", "no_resnet"), lambda a: a.slct_ipc > 0, "add --slct_ipc IPC_T (YOCO pruning)"),
    (("test_data_dir", "custom_data_dir"), lambda a: a.slct_type != "random",
     "-s random evaluates the real images; drop -s random to evaluate a condensed set"),
    (("val_seed",), lambda a: a.val_per_class > 0, "add --val_per_class K (the held-out validation images)"),
)


def check_only_with(args):
    """Refuse an explicit option that would have no effect without another one (``ONLY_WITH``)."""
    for dests, active, fix in ONLY_WITH:
        given = [d for d in dests if d in args.explicit]
        if given and not active(args):
            raise UserError(f"--{given[0]} has no effect here; {fix}, or leave it out")


def validate_args(args):
    """test.py's argument checks and derived settings (YOCO factor and epochs, --same_compute). The epochs of
    prefix evaluations (--prefix_epochs) are derived with the others in ``cli.arguments.resolve``."""
    if args.test_type not in TEST_TYPES:
        raise UserError(f"unknown --test_type {args.test_type!r}; choose one of {', '.join(TEST_TYPES)}")
    check_only_with(args)
    if args.decode_type == "bound":  # the reference's test.py decodes bound sets single (MDC reference test.py,
    # load_data_path and decode)
        print("note: --decode_type bound: test.py decodes the set single, as the reference, with the epochs of "
              "the bound count", file=sys.stderr)
    if args.test_type in ("cx_cy", "baseline_b"):
        if args.ipc <= 0 or args.ipcy <= 0:
            raise UserError(f"--test_type {args.test_type} needs --ipc N and --ipcy y (1 <= y <= N)")
        if args.ipcy > args.ipc:
            raise UserError(f"--ipcy {args.ipcy} is larger than --ipc {args.ipc}; pass 1 <= --ipcy <= --ipc")
    if args.slct_ipc > 0:  # YOCO pruning (YOCO reference argument.py; docs/algorithms.md#pruning-key-resolution)
        if args.test_type != "other" or args.slct_type == "random":
            raise UserError("--slct_ipc prunes a condensed set: use it with --test_type other and no -s random")
        check_pruning_key(args.pruning_key)
        if 0 < args.ipc <= args.slct_ipc:
            raise UserError(f"--slct_ipc {args.slct_ipc} must be smaller than --ipc {args.ipc} (IPC_T < IPC_F)")
        if args.ipc > 0:  # the whole key resolution (CCS ratio table, unread flags) before any work
            pruning_config(args, args.ipc)
        if "factor" not in args.explicit:
            args.factor = default_factor(args.condense_key, args.dataset)
            if args.dataset == "imagenet" and "epochs" not in args.explicit:  # from IPC_F*f^2, as the reference (B14)
                args.epochs = ipc_epoch(args.ipc, args.factor, args.nclass)
    if args.same_compute and args.factor > 1:
        args.epochs = max(1, args.epochs // args.factor**2)
    check_eval_nets(args)  # every network to train can be built: an unknown --eval_net costs no training
