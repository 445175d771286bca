#!/usr/bin/env bash
# MDC Table 4: cross-architecture: the sets of Baselines A, B, C and MDC (condensed with ConvNet-3, default
# CIFAR-10, N = 10, f = 2) evaluated at every IPC-y = 1 … N by ResNet-10-BN and DenseNet
# (test.py --eval_net resnet10_bn,densenet; rows per network: A, B, C, MDC).
# The condensations are Table 1's (same commands, same folder, --resume): none is run again if Table 1 has
# run; A at IPC N is the Baseline C run and B's block 0 is A at IPC 1, as in Table 1.
# Usage: bash scripts/mdc_table4.sh [dataset=cifar10] [N=10] [EXTRA condensation flags]
#        DRY_RUN=1 prints the commands and runs nothing; BUDGET=paper|cpu|smoke (scripts/lib.sh);
#        DEVICE=auto|cpu|cuda; OUT=<folder> (default raid/mdc_table4/<dataset>); RUNS=<folder> holds the
#        condensations (default Table 1's raid/mdc_table1/<dataset>); runs resume (--resume).
# Work at the paper budget, N = 10: Table 1's 2N = 20 condensations of 2000 outer iterations x 100 inner
# steps (none if Table 1 has run) and 4N = 40 evaluations x 2 networks x 3 repeats x 1000 epochs. GPU hours:
# not measured (no GPU has been lent to this project); the report lands in $OUT/report/mdc4.{md,csv,png}.
# Declarations (checked by the pre-check before anything starts, sweep/precheck.py):
#: arg DATASET flag:-d       the dataset (imagenet: ImageNet-10); its values are condense_reg.py's -d
#: arg N int>=2              the IPC to condense to (MDC's subsets are IPC-1 … IPC-(N-1))
#: rest condense_reg.py      EXTRA condensation flags, appended to every condensation
#: env OUT text              the table's folder
#: env RUNS text             the folder of the runs shared between tables
set -euo pipefail
source "$(dirname "$0")/lib.sh"
DATASET=${1:-cifar10}; N=${2:-10}; shift $(( $# > 2 ? 2 : $# )) || true
OUT=${OUT:-raid/mdc_table4/$DATASET}
mdc_setup "$DATASET" "$N" "$@"
install_requirements

mdc_abc_condense
mdc_abc_eval "$OUT" --eval_net resnet10_bn,densenet
run python3 -m evaluation.report mdc4 "$OUT/A.json" "$OUT/B.json" "$OUT/C.json" "$OUT/MDC.json" --out "$OUT/report"
