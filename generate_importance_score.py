"""YOCO step 3: importance scores of every decoded image from the training dynamics (reference
he-y/you-only-condense-once/generate_importance_score.py; docs/algorithms.md#scores).

    python generate_importance_score.py -d cifar10 --condense_key idc --ipc 10
    python generate_importance_score.py -d fashion --ipc 10 --custom-data-dir <folder> --stop_epoch 50

Inputs (``raid/{reproduce_exp}/dynamics_and_scores/{key}/{dataset}/ipc{IPC}/`` unless overridden): the
decoded set (normalised, no augmentation), ``ckpt-last.pt`` and the dynamics: ``td-ipc{IPC}.pickle``, else
the compact ``td-ipc{IPC}.pt``, else the statistics-only ``td-ipc{IPC}-stats.pt`` (``--compact stats``;
same scores up to float32 rounding), or ``--td-file``. Every key of docs/algorithms.md#score-file (YOCO reference
generate_importance_score.py) is computed by
``yoco.scores.compute_scores``: the dynamics keys from the log (or its statistics), ``entropy``/``loss``
from the clean logits and the k-means lists from the ``embed`` features of ckpt-last in eval mode. Output
``data-score-ipc{IPC}-ep{E}.pickle`` (reference layout, written atomically). Stop epoch E and top-K per
condense key (YOCO reference generate_importance_score.py; docs/algorithms.md#el2n-and-lbpe) unless given.
Fixes: B2 (DSA writes ep100 and test.py reads ep100), B3 (DREAM reads the requested dataset).
"""
import argparse
import os
import time

from cli.arguments import cli
from utils.errors import UserError
from cli.options import compat_group, described_parser
from utils.ranges import ranged
from cli.yoco_options import add_condensed_set_args


EXAMPLES = """examples:
  python generate_importance_score.py -d cifar10 --condense_key idc --ipc 10 --reproduce_exp reproduce_1
  python generate_importance_score.py -d fashion --custom-data-dir <run folder> --base-dir <dynamics folder> \\
      --stop_epoch 50
"""


def get_args_parser():
    p = described_parser("YOCO step 3: importance scores of every decoded image (LBPE, EL2N, forgetting, AUM, entropy, "
                    "SSP k-means) from the training dynamics", EXAMPLES)
    a = ranged(p.add_argument_group("scores and files").add_argument)
    hide = argparse.SUPPRESS
    a("--batch-size", "--batch_size", dest="batch_size", type=int, valid=">= 1", default=256,
      help="batch of the clean passes")
    a("--score_file", default="", help=hide)  # unused by the reference; see --custom-out-name
    a("--data-dir", "--data_dir", dest="data_dir", default="datasets", help=hide)  # test set: unused
    a("--imagenet-dir", "--imagenet_dir", dest="imagenet_dir", default="datasets/imagenet", help=hide)
    a("--custom-out-name", dest="out", default=None,
      help="output file (default {dir}/data-score-ipc{IPC}-ep{E}.pickle)")
    a("--td-file", dest="td_file", default=None,
      help="dynamics log or stats file (default {dir}/td-ipc{IPC}.pickle, .pt or -stats.pt)")
    a("--ckpt", default=None, help="model checkpoint (default {dir}/ckpt-last.pt)")
    a("--stop_epoch", type=int, valid=">= 1", default=None,
      help="LBPE epochs are chosen in [0, E) (default per condense key)")
    a("--topk", type=str, default=None, help="comma list of K for LBPE_top{K} (default 10 idc/dream, 3 others)")
    a("--use-loss", dest="use_loss", action="store_true", help="also loss_LBPE_top{K}: epochs of smallest loss")
    a("--seed", type=int, valid=">= 0", default=0, help="k-means seed (the reference is unseeded)")
    return compat_group(add_condensed_set_args(p))


def parse_topk(text):
    try:
        ks = [int(t) for t in str(text).split(",") if t.strip()]
    except ValueError:
        ks = []
    if not ks or min(ks) < 1:
        raise UserError(f"--topk {text!r} must be a comma list of positive integers, e.g. 10 or 3,10")
    return ks


def check_args(args):
    """The checks ``main`` runs before any work (also the table scripts' pre-check, sweep/precheck.py)."""
    from yoco.dynamics import data_settings

    if args.score_file:
        raise UserError("--score_file is not used by the generator; choose the output with --custom-out-name")
    if args.random_selection:
        raise UserError("--random_selection is not supported: scores are computed on the full decoded set")
    data_settings(args)


def main(args):
    # the work modules load torch: imported here so that -h does not need it
    import torch

    from utils.config import resolve_device, set_seed
    from utils.files import check_apart, check_output_file
    from yoco.dynamics import clean_pass, load_condensed_set, load_dynamics_model, resolve_paths
    from yoco.dynamics_stats import load_score_input
    from yoco.pruning import default_stop_epoch, default_topk, find_td_file, score_name
    from yoco.scores import compute_scores, save_score_file

    check_args(args)
    resolve_paths(args)
    device = resolve_device(args.device)
    set_seed(args.seed)
    topk = parse_topk(args.topk) if args.topk is not None else [default_topk(args.condense_key)]  # before any work
    x, y = load_condensed_set(args)
    folder = os.path.join(args.base_dir, args.task_name or f"ipc{args.ipc}")
    stop = args.stop_epoch if args.stop_epoch is not None else default_stop_epoch(args.condense_key, args.dataset)
    td = args.td_file or find_td_file(folder, args.ipc)
    if td is None:
        raise UserError(f"no td-ipc{args.ipc}.pickle, .pt or -stats.pt in {folder}; run get_training_dynamics.py "
                        "first (or pass --td-file)")
    out = args.out or os.path.join(folder, score_name(args.ipc, stop))
    check_output_file(out, "score file", "--custom-out-name")
    check_apart(out, "--custom-out-name", [(args.custom_data_dir, "--custom-data-dir"), (td, "the dynamics log"),
                                           (args.ckpt or os.path.join(folder, "ckpt-last.pt"), "the checkpoint")])
    t0 = time.time()
    name, dynamics, batch_ids = load_score_input(td, len(x), args.nclass, dtype=torch.float16)
    if name != args.dataset:
        raise UserError(f"{td} was recorded on {name!r}, not on {args.dataset!r}; check -d/--dataset")
    model = load_dynamics_model(args, args.ckpt or os.path.join(folder, "ckpt-last.pt"), device)
    logits, feats = clean_pass(model, x, args.dataset, args.batch_size, device)
    scores = compute_scores(dynamics, y, stop_epoch=stop, topk=topk, use_loss=args.use_loss,
                            batch_ids=batch_ids, logits_last=logits, features=feats, factor=args.factor,
                            seed=args.seed)
    save_score_file(out, scores)
    print(f"{len(scores)} score keys for {len(x)} decoded images ({dynamics.shape[0]} logged epochs, "
          f"stop epoch {stop}, top-K {topk}) -> {out} ({time.time() - t0:.1f}s)")
    return {"out": out, "keys": sorted(scores)}


if __name__ == "__main__":
    cli(main, get_args_parser)
