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
from utils.arguments import check_nclass_sub, cli
from utils.errors import UserError
from utils.options import M, condense_parser


def get_args_parser():
    return condense_parser("Class-partitioned condensation (condense_reg_mp.py): --nclass_sub k --phase p", M)


def partition(args):
    """The classes of partition ``--phase p``: p·k … (p+1)·k−1 for ``--nclass_sub k`` (spec mdc §10)."""
    k, p, n = args.nclass_sub, args.phase, args.nclass
    check_nclass_sub(k, n)
    if not 0 <= p < n // k:
        raise UserError(f"--phase {p}: it is the partition this process condenses; with --nclass_sub {k} and "
                        f"--nclass {n} use 0..{n // k - 1}")
    return list(range(p * k, (p + 1) * k))


def main(args):
    from condensation.runner import run_condensation  # the work modules load torch: not needed for -h

    return run_condensation(args, classes=partition(args), mp=True)


if __name__ == "__main__":
    cli(main, get_args_parser)
