#!/usr/bin/env bash
# MDC Table 10: accuracy during condensation: Baseline C and MDC (default CIFAR-10, N = 10, ConvNet-3, f = 2)
# condensed with in-run evaluations on (--eval_during True): at the start and at every save point (every
# 100 outer iterations, and every P = --adaptive_period iterations for MDC) the full set is evaluated and,
# for MDC (ipc <= 10 and f < 3, as the reference), every prefix IPC-1 … IPC-(N-1); the report reads them
# from each run's metrics.jsonl (rows: method x iteration, columns IPC-x).
# These two runs are this table's own: Table 1's C and MDC runs have no in-run evaluations (the images are
# the same: the evaluations run on their own seed and do not change the condensation).
# Usage: bash scripts/mdc_table10.sh [dataset=cifar10] [N=10] [EXTRA condensation flags]
#        DRY_RUN=1 prints the commands and runs nothing; BUDGET=paper|cpu|smoke (scripts/lib.sh; the in-run
#        evaluations train for the budget's evaluation epochs); DEVICE=auto|cpu|cuda; OUT=<folder> (default
#        raid/mdc_table10/<dataset>); runs resume (--resume).
# Work at the paper budget, N = 10: 2 condensations of 2000 outer iterations x 100 inner steps, with
# in-run evaluations at 21 points (iterations 0, 100, …, 2000) x 1 repeat x 1000 epochs: MDC 21 x N = 210
# evaluations (full set + 9 prefixes), C 21. GPU hours: not measured (no GPU has been lent to this
# project); the report lands in $OUT/report/mdc10.{md,csv,png}.
# Declarations (checked by the pre-check before anything starts, sweep/precheck.py):
#: arg DATASET flag:-d       the dataset (imagenet: ImageNet-10); its values are condense_reg.py's -d
#: arg N int>=2              the IPC to condense to (MDC's subsets are IPC-1 … IPC-(N-1))
#: rest condense_reg.py      EXTRA condensation flags, appended to every condensation
#: env OUT text              the table's folder
set -euo pipefail
source "$(dirname "$0")/lib.sh"
DATASET=${1:-cifar10}; N=${2:-10}; shift $(( $# > 2 ? 2 : $# )) || true
OUT=${OUT:-raid/mdc_table10/$DATASET}
mdc_setup "$DATASET" "$N" "$@"
EV=(--eval_during True)  # the in-run evaluations train for the budget's test.py epochs (paper: the protocol's)
for ((i = 0; i < ${#EVAL_BUDGET[@]}; i++)); do
  [ "${EVAL_BUDGET[i]}" = --epochs ] && EV+=(--eval_epochs "${EVAL_BUDGET[i + 1]}")
done
install_requirements

mdc_condense "$OUT/C" --ipc "$N" "${EV[@]}"
mdc_condense "$OUT/MDC" --ipc "$N" --adaptive_reg True "${EV[@]}"
run python3 -m evaluation.report mdc10 "C=$OUT/C" "MDC=$OUT/MDC" --out "$OUT/report"
