"""Condensation driver: IDC gradient matching plus MDC's adaptive subset loss (reference
he-y/Multisize-Dataset-Condensation/condense_reg.py; docs/algorithms.md#the-condensation-loop,
#mls-selection-and-freezing).

    python condense_reg.py --reproduce -d cifar10 -f 2 --ipc 10 --adaptive_reg True    # MDC
    python condense_reg.py --reproduce -d cifar10 -f 2 --ipc 10                        # Baseline C
    python condense_reg.py ... --resume                                              # continue

The loop is docs/algorithms.md#the-condensation-loop (MDC reference condense_reg.py, condense): a fresh network every
max(1, fix_iter) outer iterations (+ ``early``
epochs on real data); the images are clamped once per outer iteration; per inner step and class a
real batch and the decoded synthetic images of the class go through Normalize + batch-shared DiffAug
together, the gradient-matching loss (+ the subset term of the MLS, with the frozen prefix detached)
drives ONE SGD over the whole image tensor (the cross-class momentum leakage is kept); then the
network trains on ``n_data`` real samples. MLS re-selection happens after window iterations.
The run is ``condensation/runner.py``, the loop ``condensation/loop.py``, the MLS selection and
freezing ``reg_ipcx.py``.

Reference bugs fixed here (docs/reference-differences.md#bugs-fixed):
* item 1: a run without ``--adaptive_reg`` no longer crashes at the first save (the regulariser
  file is written only with MDC, and as JSON instead of a pickle);
* item 2: f = 1 with MDC works: the frozen prefix is detached out of place (``grad_match_loss``),
  never by an in-place write into a view of the leaf tensor;
* item 3: ``--adaptive_reg True`` with ipc 1 (or a prefix that cannot fit, docs/algorithms.md#mdc-preconditions) is a
  one-line error at start instead of an assertion at the first selection;
* item 4: ``--use_aim False`` means False, and aim is needed only with ``--use_aim True`` (docs/tracking.md);
* item 5: the mix initialisation with ``--load_memory False`` (streaming ImageNet) honours
  ``start_idx`` (``ClassSampler.class_sample``);
* item 8: ``--phase`` no longer shifts the ImageNet classes (it is an mp-only flag, rejected here).
Also item 12 (``_noreg`` folder suffix for Baseline C, see ``condensation/run_files.py``). Kept on purpose:
items 11 (saved data not clamped), 14 (in-run subset evals only when ipc ≤ 10 and f < 3), 15
(it_test from niter) and 18 (DREAM k-means on unnormalised images).
"""
from cli.arguments import cli
from cli.options import condense_parser


def get_args_parser():
    return condense_parser("Dataset condensation: IDC gradient matching + MDC (condense_reg.py)")


def check_args(args):
    """The checks ``main`` runs before any work (in ``run_condensation``; also the table scripts' pre-check,
    sweep/precheck.py)."""
    from condensation.runner import check_args as check_condensation

    check_condensation(args)


def main(args):
    from condensation.runner import run_condensation  # the work modules load torch: not needed for -h

    return run_condensation(args)


if __name__ == "__main__":
    cli(main, get_args_parser)
