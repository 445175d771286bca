"""IDC condensation as YOCO ships it (spec yoco §7; spec mdc §8.6 without MDC).

    python condense.py --reproduce_condense -d cifar10 -f 2 --ipc 10

The same loop as condense_reg.py (``utils/condense_loop.py``: nothing is re-implemented here) with
the adaptive subset loss off. Output: ``raid/condensed_img/idc/{datatag}/{modeltag}{tag}``, i.e.
with the ``idc/`` level that YOCO's loaders expect (fixes spec yoco B11), for example
``raid/condensed_img/idc/cifar10/conv3in_grad_mse_nd2000_cut_niter2000_factor2_lr0.005_mix_ipc10``.
Every save point writes ``data_{it}.pt`` and also ``data.pt`` (the file YOCO reads).

Differences from YOCO's copy (spec yoco §7, B11): IDC's ``early`` network pre-training is kept
(YOCO removed it, so its ImageNet runs carried ``ely10`` in the name without running it); saves and
in-run evaluations follow IDC/MDC's schedule (every 100 iterations and at the end) instead of every
40 iterations; ``--eval_during False`` switches the evaluations off.
"""
import os

from condense_reg import get_args_parser as _reg_parser
from condense_reg import run_condensation
from utils.condense_io import default_save_dir
from utils.config import UserError, cli

ROOT = os.path.join("raid", "condensed_img", "idc")


def get_args_parser():
    p = _reg_parser()
    p.description = "IDC condensation (YOCO's condense.py); MDC is condense_reg.py --adaptive_reg True"
    return p


def main(args):
    if args.adaptive_reg:
        raise UserError("condense.py is plain IDC; run condense_reg.py for --adaptive_reg True (MDC)")
    if args.save_dir:
        save_dir = None
    else:
        from condense_reg import finalize_args

        finalize_args(args)
        save_dir = default_save_dir(args, root=ROOT, noreg=False)
    return run_condensation(args, save_dir=save_dir, noreg=False, save_plain=True)


if __name__ == "__main__":
    cli(main, get_args_parser)
