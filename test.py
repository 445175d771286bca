"""Evaluate a condensed set: train fresh networks on it and report test accuracy (reference
he-y/Multisize-Dataset-Condensation/test.py; reference he-y/you-only-condense-once/test.py; docs/evaluating.md;
docs/algorithms.md#pruned-set-evaluation).

    python test.py -d cifar10 -f 2 --ipc 10 --test_type cx_cy --ipcy 5 --test_data_dir <run dir> --repeat 3
    python test.py -d fashion -s random --ipc 10 -f 1 --repeat 3

Test types: ``other`` (the whole set), ``cx_cy`` (the IPC-y prefix of an IPC-N set: the first y·f²
decoded images per class; Baseline C and MDC rows), ``baseline_b`` (N separate IPC-1 runs). Sources
(``-s``): a condensed folder or ``.pt`` (idc, dream; ``idc_cat`` merges class-partitioned runs),
``random`` (the first ipc real images per class), and pre-normalised dc/dsa/kip/mtt tensors. On CIFAR,
``-s dsa|dc|mtt`` evaluate with the reference's settings for those sets (f = 1; dsa, dc: no CutMix; dc:
no DSA, crop + flip instead) unless a flag is given explicitly. ``cx_cy`` and ``baseline_b`` train for the
epochs of the full ``--ipc`` as the reference (``--prefix_epochs subset``: of IPC-y; only ImageNet differs).
Every evaluation is appended to a JSON record (``--results_file``); ``--save_subset`` exports the
exact (decoded) training set that was evaluated.

The work is done by the ``evaluation`` package: ``sources`` (which set, decoded and pruned),
``protocol`` (the training protocol) and ``records`` (the JSON record and resumable repeats).
"""
import os

from cli.arguments import cli, interrupt_note
from cli.options import T, script_parser


def get_args_parser():
    return script_parser("Evaluate a condensed set: train fresh networks on it, report test accuracy (MDC / YOCO "
                         "test.py)", T)


def interrupted(partial):
    """The text of an interruption's line (``cli.arguments.cli``): the finished repeats the ``.partial`` file keeps.
    test.py has no ``--resume``: the same command finds the file by its settings (evaluation/records.py,
    ``PartialRuns``; docs/failures.md#an-interruption-is-one-line)."""
    n = sum(len(runs) for runs in partial.done.values())
    if n == 0:
        return "no repeat had finished, nothing was kept; re-run the same command to start again"
    return (f"{n} finished repeat{'s' if n > 1 else ''} kept in {partial.path}; re-run the same command to continue "
            "after them")


def check_args(args):
    """The checks ``main`` runs before any work (also the table scripts' pre-check, sweep/precheck.py)."""
    from evaluation.sources import validate_args

    validate_args(args)


def main(args):
    # the work modules load torch: imported here so that -h does not need it
    from data.condensed import save_condensed
    from evaluation.protocol import evaluate_set, held_out_set
    from evaluation.records import PartialRuns, append_record, default_results_file, make_record
    from evaluation.sources import PRE_NORMALISED, build_train_set, check_outputs, source_path
    from utils.config import jsonable, resolve_device, set_seed
    from utils.files import clean_stale_temps
    from tracking.client import open_tracker, test_names, tracker_of

    check_args(args)
    device = resolve_device(args.device)
    # every output path is checked before any work (a bad one must not cost a training run)
    results_file = default_results_file(args, None if args.slct_type == "random" else source_path(args))
    check_outputs(args, results_file)
    set_seed(args.seed, args.deterministic)
    partial = PartialRuns(results_file, args)
    interrupt_note(lambda: interrupted(partial))  # Ctrl-C, SIGTERM: what the .partial file keeps
    x, y, source = build_train_set(args)
    held_out = held_out_set(args, device)  # --val_per_class: real training images never trained on (None: off)
    pre_norm = args.slct_type in PRE_NORMALISED and args.condense_key == "idc"
    clean_stale_temps(os.path.dirname(os.path.abspath(results_file)))
    if args.save_subset:
        save_condensed(args.save_subset, x, y)
        print(f"saved the evaluated training set ({len(x)} images) to {args.save_subset}")
    if args.source_hook:  # the reference's settings for sets of other methods (-s dsa|dc|mtt|dream)
        print(f"-s {args.slct_type}: " + ", ".join(f"{k} {v}" for k, v in args.source_hook.items()))
    if args.test_type in ("cx_cy", "baseline_b") and "epochs" not in args.explicit:
        print(f"epochs of IPC-{args.ipc if args.prefix_epochs == 'full' else args.ipcy} "
              f"(--prefix_epochs {args.prefix_epochs})")
    print(f"{args.test_type}: {len(x)} training images of {args.nclass} classes from {source}; "
          f"{args.epochs} epochs x {args.repeat} on {device}")
    if held_out is not None:
        print(f"held out for validation: {args.val_per_class} training images per class (--val_seed {args.val_seed}), "
              "never trained on; best_on_val = the test accuracy at the best held-out epoch")
    # experiment tracking (docs/tracking.md): a new Aim run per invocation, as the reference's test.py
    exp, name = test_names(args)
    folder = os.path.dirname(os.path.abspath(results_file))
    tracker = open_tracker(args, kind=tracker_of(args), folder=folder, experiment=exp, name=name,
                           tb_folder=os.path.join(folder, "tensorboard", f"{name}_{partial.run_id[:8]}"),
                           hparams=jsonable(vars(args)), keep_hash=False, tag=args.run_tag)

    def on_epoch(net, repeat, epoch, values):  # the YOCO trainer's per-epoch names, one series per repeat
        for key, v in values.items():
            tracker.scalar(key, v, epoch, {"subset": net, "repeat": repeat}, epoch=epoch)

    try:
        res = evaluate_set(args, x, y, device, pre_norm, done=partial.done, on_run=partial.save, seed_repeats=True,
                           on_epoch=on_epoch, held_out=held_out)
        for net, r in res.items():  # MDC's "best acc"/"std" and YOCO's "last acc"/"std best"/"std last"
            for key, v in (("best acc", r["best"]["mean"]), ("std", r["best"]["std"]), ("last acc", r["last"]["mean"]),
                           ("std best", r["best"]["std"]), ("std last", r["last"]["std"])):
                tracker.scalar(key, v, 0, {"subset": net})
    finally:
        tracker.close()
    record = make_record(args, device, source, len(x), res, partial.elapsed(), run_id=partial.run_id)
    if append_record(results_file, record):
        print(f"results appended to {results_file}")
    else:
        print(f"results were already in {results_file} (an interrupted run had written them)")
    partial.clear()
    return record


if __name__ == "__main__":
    cli(main, get_args_parser)
