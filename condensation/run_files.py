"""Files of a condensation run (reference he-y/Multisize-Dataset-Condensation/condense_reg.py;
docs/algorithms.md#windows-and-save-points; docs/condensing.md#outputs-and-resume): folder name, resume checkpoint,
argument check on resume, metrics.

Folder: ``raid/results/{datatag}/{modeltag}{tag}`` with the reference tag (MDC reference argument.py;
docs/algorithms.md#derived-settings;
``--tag`` first, ``_dream`` right after it, as the reference). A non-MDC ``condense_reg.py`` run with
ipc ≥ 2 gets ``_noreg`` so Baseline C never shares MDC's folder (fixes mdc 12 in
docs/reference-differences.md#bugs-fixed). The mp
suffixes ``_{k}_phase{p}`` stay last so that ``test.py -s idc_cat`` finds the partitions from one
base name.

Resume checkpoint ``checkpoint.pt`` (re-impl; the reference restored only the images and the
iteration, MDC reference condense_reg.py, condense; docs/condensing.md#outputs-and-resume): images, image-optimiser
momentum, network and its optimiser, regulariser
states, the next iteration, every global RNG state and the ``ClassSampler`` queues. It holds only
tensors and plain Python values, so it loads with ``weights_only=True``.
"""
import os
import re

from data.condensed import load_condensed
from data.datasets import dataset_folders
from utils.config import jsonable, to_json
from cli.options import NUMBER_KEYS
from condensation.mls import folder_tag
from evaluation.records import read_metrics_file, read_run_args
from utils.errors import UserError
from utils.files import atomic_save, atomic_write_text, check_apart, check_fresh_folder, load_torch, nonfinite

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"


def condense_tag(args, lr_img_unscaled, marker=""):
    """Folder suffix of a condensation run, built as the reference's ``argument.py`` builds it (MDC reference
    argument.py; docs/algorithms.md#derived-settings, read from the code): ``_{tag}`` first, ``_dream`` for DREAM runs,
    then matching, MDC
    period, network-update, multi-formation and image-update parts (``_mom`` is the *network* momentum
    ``--momentum``; ``--mom_img`` never enters the name), ``_{init}_ipc{ipc}``, ``_idx_{start_idx}``.
    ``marker`` (ours: ``_noreg``) goes right before the partition parts ``_{k}_phase{p}``, which stay
    last so that ``test.py -s idc_cat`` finds the partitions from one base name."""
    t = f"_{args.tag}" if args.tag else ""
    if args.slct_type == "dream":
        t += "_dream"
    if args.match == "feat":
        t += f"_f{args.f_idx}"
    elif args.match == "grad":
        t += "_grad" + ("_b" if args.bias else "") + ("_fc" if args.fc else "")
    if args.adaptive_reg:
        if args.adaptive_period != 100:
            t += f"_{args.adaptive_period}"
        if args.adaptive_class_wise:
            t += "_class_wise"
        # ours, only when not MDC's defaults (the reference had no switch): the Table 3 / 5 ablations,
        # ``_mls{select}``, ``_nofreeze``, ``_mls{metric}`` (the entries' tags, condensation/mls)
        t += folder_tag(args)
    t += f"_{args.metric}"
    if args.pt_from >= 0:
        t += f"_pt{args.pt_from}" + (f"_{args.pt_num}" if args.pt_num > 1 else "")
    if args.fix_iter > 0:
        t += f"_fix{args.fix_iter}"
    if args.early > 0:
        t += f"_ely{args.early}"
    if args.n_data >= 0:
        t += f"_nd{args.n_data}"
        if args.inner_loop != 100:
            t += f"_inloop{args.inner_loop}"
    if args.mixup_net == "cut":
        t += "_cut"
    if args.lr != 0.01:
        t += f"_nlr{args.lr}"
    if args.weight_decay != 5e-4:
        t += f"_wd{args.weight_decay}"
    if args.niter != 500:
        t += f"_niter{args.niter}"
    if args.factor > 0:
        t += f"_factor{args.factor}"
        if args.decode_type != "single":
            t += f"_{args.decode_type}"
    if args.aug_type != "color_crop_cutout":
        t += f"_{args.aug_type}"
    t += f"_lr{lr_img_unscaled}"
    if args.momentum != 0.9:
        t += f"_mom{args.momentum}"
    if args.batch_real != 64:
        t += f"_b_real{args.batch_real}"
    if args.batch_syn_max != 128:
        t += f"_synmax{args.batch_syn_max}"
    t += f"_{args.init}_ipc{args.ipc}"
    if args.start_idx != 0:
        t += f"_idx_{args.start_idx}"
    t += marker
    if args.nclass_sub > 0:
        t += f"_{args.nclass_sub}"
    if args.phase >= 0:
        t += f"_phase{args.phase}"
    return t


def run_tag(args, noreg=True):
    """Reference tag (with the un-scaled lr_img), plus our markers before the mp parts: ``_noreg`` for a
    ``condense_reg.py`` run without MDC (ipc >= 2), ``_picks`` for ``--dream_random_init picks``, ``_exact``
    for ``--exact True`` (``_exact_closed`` with ``--coast closed``), ``_globalmls`` for ``--global_mls True``
    (condense_reg_mp.py under torchrun), ``_bf16``/``_tf32`` for ``--precision`` and ``_cb`` for
    ``--class_batch True``."""
    marker = ""
    if noreg and not args.adaptive_reg and args.ipc >= 2:
        marker += "_noreg"
    if args.slct_type == "dream" and args.init == "random" and args.dream_random_init == "picks":
        marker += "_picks"
    if getattr(args, "exact", False):  # ours: per-class streams (condensation/parallel.py)
        marker += "_exact" + ("_closed" if getattr(args, "coast", "replay") == "closed" else "")
    elif getattr(args, "global_mls", False):
        marker += "_globalmls"
    if getattr(args, "precision", "fp32") != "fp32":  # ours: numbers of another arithmetic (training/precision.py)
        marker += "_" + args.precision
    if getattr(args, "class_batch", False):  # ours: the class-batched inner step (condensation/batched.py)
        marker += "_cb"
    return condense_tag(args, args.lr_img_unscaled, marker)


def default_save_dir(args, root=os.path.join("raid", "results"), noreg=True):
    if args.save_dir:
        return args.save_dir
    if args.test:
        return os.path.join(root, "test")
    return os.path.join(root, args.datatag, args.modeltag + run_tag(args, noreg))


# ------------------------------------------------------------------------------------------------
# resume


def is_run_file(name):
    """A file a condensation run writes into its folder (what makes a folder "another run")."""
    return name in (CHECKPOINT, METRICS, "args.yaml", "it.pt") or bool(re.fullmatch(r"data(_\d+)?\.pt", name))


def check_run_folder(args, save_dir):
    """Before any work: the run folder is not inside the real dataset's files, and holds no other run unless
    the command resumes it (``--resume``; ``--test`` runs share the scratch folder raid/results/test)."""
    check_apart(save_dir, "--save_dir", dataset_folders(args))
    if not (args.resume or args.load_checkpoint or args.test):
        check_fresh_folder(save_dir, is_run_file, "condensation run", "--save_dir")


def check_resume_args(args, folder):
    """UserError if the folder's args.yaml is damaged (a setting of another type than the command's, a non-finite
    number: ``evaluation.records.read_run_args``) or differs from ``args`` in a number-affecting setting."""
    path = os.path.join(folder, "args.yaml")
    if not os.path.exists(path):
        return
    new = jsonable(vars(args))
    old = read_run_args(path, "restore the run's args.yaml from a backup, or delete it to resume without comparing "
                        "the settings (or pass another --save_dir)", like=new, keys=NUMBER_KEYS)
    diff = []
    for k in NUMBER_KEYS:
        if k not in old or k not in new:
            continue
        a, b = old[k], new[k]
        if a != b:  # both of one type and finite (read_run_args; every number option is finite, utils/ranges.py)
            diff.append(f"{k}: {a!r} -> {b!r}")
    if diff:
        raise UserError(f"cannot resume {folder}: it was run with different settings ({'; '.join(diff)}); "
                        "use the original flags or another --save_dir")


def save_checkpoint(folder, state):
    atomic_save(state, os.path.join(folder, CHECKPOINT))


def load_checkpoint(folder):
    """The resume checkpoint of ``folder`` (on CPU; the loop moves each part to its device) or None.
    A truncated or damaged file, or one holding NaN/Inf, is a one-line error: resuming from it would
    continue a broken run."""
    path = os.path.join(folder, CHECKPOINT)
    if not os.path.exists(path):
        return None
    fix = "delete it to restart from scratch (or restore it from a backup)"
    ck = load_torch(path, "resume checkpoint", fix)
    if not isinstance(ck, dict) or "it" not in ck or "data" not in ck:
        raise UserError(f"{path} is not a resume checkpoint of this project; {fix}")
    bad = nonfinite({k: ck.get(k) for k in ("data", "opt_img", "model", "opt_net")})
    if bad:
        raise UserError(f"the resume checkpoint {path} holds NaN/Inf values ({', '.join(bad[:3])}): the run had "
                        f"diverged before it was saved; {fix}")
    return ck


def load_reference_resume(folder):
    """A reference-style folder (``it.pt`` + ``data_{it}.pt``, no checkpoint): (it, data) or None.
    Restores only the images and the iteration, as the reference did (MDC reference condense_reg.py, condense;
    docs/condensing.md#outputs-and-resume)."""
    it_path = os.path.join(folder, "it.pt")
    if not os.path.exists(it_path):
        return None
    fix = "delete it (and the data files after it) to resume from scratch"
    it = load_torch(it_path, "iteration file", fix)
    try:
        it = int(it)
    except (TypeError, ValueError, RuntimeError):
        raise UserError(f"{it_path} does not hold an iteration number; {fix}") from None
    data_path = os.path.join(folder, f"data_{it}.pt")
    if not os.path.exists(data_path):
        raise UserError(f"{it_path} says iteration {it} but {data_path} is missing; cannot resume")
    data = load_condensed(data_path)[0]
    if nonfinite(data):
        raise UserError(f"{data_path} holds NaN/Inf pixels; resume from another folder or start again")
    return it, data


# ------------------------------------------------------------------------------------------------
# metrics


def read_metrics(folder):
    """The records of the folder's ``metrics.jsonl`` (None without one); a damaged file is a one-line error."""
    path = os.path.join(folder, METRICS)
    if not os.path.exists(path):
        return None
    fix = "remove its damaged lines (each line is one JSON object of the run), or delete it (losing the run's " \
          "metrics), and resume again"
    return read_metrics_file(path, fix)


def truncate_metrics(folder, it):
    """Cut ``metrics.jsonl`` back to checkpoint ``it`` (the records after it were written by a run that was
    later interrupted). Returns the kept records of save point ``it`` when the point was left open: its
    ``save`` record, written after the point's evaluations, is missing, so the kill came between the
    checkpoint and the end of the evaluations; its partial ``eval`` records are dropped too and the resumed
    run re-does them. Returns None when the point was closed (or the folder has no records)."""
    records = read_metrics(folder)
    if records is None:
        return None
    closed = any(r.get("type") == "save" and r.get("it") == it for r in records)
    keep = [r for r in records if r.get("it", 0) < it or (r.get("it", 0) == it and (closed or r.get("type") != "eval"))]
    atomic_write_text(os.path.join(folder, METRICS), "".join(to_json(r) + "\n" for r in keep))  # a kill here keeps
    # the old file, never a cut one
    return None if closed else [r for r in keep if r.get("it", 0) == it]


def reset_metrics(folder):
    path = os.path.join(folder, METRICS)
    if os.path.exists(path):
        os.unlink(path)
