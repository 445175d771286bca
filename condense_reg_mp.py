"""Class-partitioned condensation (spec mdc §10, Appendix B.6): one process per block of classes.

    python condense_reg_mp.py --reproduce -d cifar100 -f 2 --ipc 10 --adaptive_reg True --nclass_sub 20 --phase 0
    ...                                                                              --phase 4
    python test.py --reproduce -d cifar100 -f 2 --ipc 10 -s idc_cat --nclass_sub 20 --test_data_dir <base>

A thin layer over ``condensation/runner.py``, the run of condense_reg.py (loop: ``condensation/loop.py``):
the synthetic tensor holds only the classes p·k … (p+1)·k−1 with their real ids as targets, the network
keeps all nclass outputs, network updates use all-class batches of the full training set, and "global" MLS mode
averages over the partition's classes only (so each phase makes its own decision, spec §14 item 17).
Output: the condense_reg.py folder name with ``_{k}_phase{p}`` (``<base>_{k}_phase{p}``).

Differences from the reference mp script: the real class batches use ``--batch_real`` (the reference
hard-coded 64, spec §14 item 17), resume and DREAM work as in condense_reg.py, ImageNet loads the
classes of phase 0 (as the reference mp script, which ignored ``--phase`` there), and the in-run
evaluations are off (evaluate the merged set with ``test.py -s idc_cat``).
"""
from condensation.runner import condense_parser, run_condensation
from utils.arguments import cli
from utils.config import UserError


def get_args_parser():
    return condense_parser("Class-partitioned condensation (condense_reg_mp.py): --nclass_sub k --phase p")


def partition(args):
    k, p = args.nclass_sub, args.phase
    if k <= 0 or p < 0:
        raise UserError("condense_reg_mp.py needs --nclass_sub k (>= 1) and --phase p (>= 0)")
    if (p + 1) * k > args.nclass:
        raise UserError(f"--phase {p} with --nclass_sub {k} goes past --nclass {args.nclass}; "
                        f"use phases 0..{args.nclass // k - 1}")
    return list(range(p * k, (p + 1) * k))


def main(args):
    return run_condensation(args, classes=partition(args), mp=True)


if __name__ == "__main__":
    cli(main, get_args_parser)
