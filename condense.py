"""IDC condensation as YOCO ships it (reference he-y/you-only-condense-once/condense.py, condense: the loop of
docs/algorithms.md#the-condensation-loop without MDC).

    python condense.py --reproduce_condense -d cifar10 -f 2 --ipc 10

The same loop as condense_reg.py (``condensation/loop.py``: nothing is re-implemented here) with
the adaptive subset loss off. Output: ``raid/condensed_img/idc/{datatag}/{modeltag}{tag}``, i.e.
with the ``idc/`` level that YOCO's loaders expect (fixes yoco B11 in docs/reference-differences.md#bugs-fixed), for
example ``raid/condensed_img/idc/cifar10/conv3in_grad_mse_nd2000_cut_niter2000_factor2_lr0.005_mix_ipc10``.
Every save point writes ``data_{it}.pt`` and also ``data.pt`` (the file YOCO reads).

Differences from YOCO's copy (YOCO reference condense.py, condense; yoco B11 in
docs/reference-differences.md#bugs-fixed; docs/condensing.md): IDC's ``early`` network pre-training is kept
(YOCO removed it, so its ImageNet runs carried ``ely10`` in the name without running it); saves and
in-run evaluations follow IDC/MDC's schedule (every 100 iterations and at the end) instead of every
40 iterations; ``--eval_during False`` switches the evaluations off.
"""
import os

from cli.arguments import cli
from utils.errors import UserError
from cli.options import condense_parser

ROOT = os.path.join("raid", "condensed_img", "idc")


def get_args_parser():
    return condense_parser("IDC condensation (YOCO's condense.py); MDC is condense_reg.py --adaptive_reg True",
                           examples="""examples:
  python condense.py --reproduce_condense -d cifar10 -f 2 --ipc 10    # YOCO's IDC input sets
  python condense.py --reproduce_condense -d imagenet --nclass 10 -f 3 --ipc 10 --imagenet_dir <folder>
""")


def check_args(args):
    """The checks ``main`` runs before any work (also the table scripts' pre-check, sweep/precheck.py)."""
    from condensation.runner import check_args as check_condensation

    if args.adaptive_reg:
        raise UserError("condense.py is plain IDC; run condense_reg.py for --adaptive_reg True (MDC)")
    check_condensation(args)


def main(args):
    from condensation.run_files import default_save_dir  # the work modules load torch: not needed for -h
    from condensation.runner import finalize_args, run_condensation

    check_args(args)
    if args.save_dir:
        save_dir = None
    else:
        finalize_args(args)
        save_dir = default_save_dir(args, root=ROOT, noreg=False)
    return run_condensation(args, save_dir=save_dir, noreg=False, save_plain=True)


if __name__ == "__main__":
    cli(main, get_args_parser)
