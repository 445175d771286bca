#!/usr/bin/env bash
# MDC Table 6: the MLS selection interval P (--adaptive_period: the MLS is re-chosen every P outer
# iterations), CIFAR-10, IPC 10, ConvNet-3, f = 2, every prefix IPC-1 … IPC-10 evaluated; rows
# P=1, P=10, P=50, P=100 (MDC's default), P=200, P=500, each an MDC run with --adaptive_period P given
# after the budget's flags (so it wins over BUDGET=cpu|smoke's period).
# P = 0 (an entry the paper's table may show) is not run: the reference selects at (it+1) % P, a division
# by zero for P = 0, and condense_reg.py rejects --adaptive_period 0.
# The row whose P is the period of the plain MDC run (100 at the paper budget; the budget's period at
# BUDGET=cpu|smoke) is Table 1's MDC run, reused. Passing --adaptive_period among the EXTRA flags is an error.
# Usage: bash scripts/mdc_table6.sh [dataset=cifar10] [N=10] [EXTRA condensation flags]
#        DRY_RUN=1 prints the commands and runs nothing; BUDGET=paper|cpu|smoke (scripts/lib.sh);
#        DEVICE=auto|cpu|cuda; OUT=<folder> (default raid/mdc_table6/<dataset>); RUNS=<folder> holds the
#        MDC run (default Table 1's raid/mdc_table1/<dataset>); runs resume (--resume).
# At the reduced budgets a run has fewer outer iterations than the larger P (BUDGET=cpu: 20, smoke: 1), so
# those rows choose their MLS only at the first iteration.
# Work at the paper budget, N = 10: 6 condensations of 2000 outer iterations x 100 inner steps (5 if Table 1
# has run: P=100 is its MDC run) and 6N = 60 evaluations x 3 repeats x 1000 epochs. GPU hours: not
# measured (no GPU has been lent to this project); the report lands in $OUT/report/mdc6.{md,csv,png}.
# Declarations (checked by the pre-check before anything starts, sweep/precheck.py):
#: arg DATASET flag:-d       the dataset (imagenet: ImageNet-10); its values are condense_reg.py's -d
#: arg N int>=2              the IPC to condense to (MDC's subsets are IPC-1 … IPC-(N-1))
#: rest condense_reg.py      EXTRA condensation flags, appended to every condensation
#: env OUT text              the table's folder
#: env RUNS text             the folder of the runs shared between tables
#: env PERIODS words:int>=1  the periods P of the rows
set -euo pipefail
source "$(dirname "$0")/lib.sh"
DATASET=${1:-cifar10}; N=${2:-10}; shift $(( $# > 2 ? 2 : $# )) || true
OUT=${OUT:-raid/mdc_table6/$DATASET}
mdc_setup "$DATASET" "$N" "$@"
for A in "${MDC_EXTRA[@]}"; do
  case $A in --adaptive_period|--adaptive_period=*)
    echo "error: --adaptive_period is the setting Table 6 varies (P = 1 … 500): leave it out of the EXTRA flags" >&2
    exit 2 ;;
  esac
done
BASE_P=100  # the plain MDC run's period: the last --adaptive_period of the budget, else the default
for ((i = 0; i < ${#COND_BUDGET[@]}; i++)); do
  [ "${COND_BUDGET[i]}" = --adaptive_period ] && BASE_P=${COND_BUDGET[i + 1]}
done
install_requirements

read -r -a PS <<< "${PERIODS:-1 10 50 100 200 500}"  # PERIODS="..." runs other periods (e.g. scaled to a CPU budget)
run_dir() { if [ "$1" = "$BASE_P" ]; then echo "$RUNS/MDC"; else echo "$OUT/P$1"; fi; }
for PP in "${PS[@]}"; do
  mdc_condense "$(run_dir "$PP")" --ipc "$N" --adaptive_reg True --adaptive_period "$PP"
done

REPORT=()
for PP in "${PS[@]}"; do
  mdc_prefixes "P=$PP" "$(run_dir "$PP")" "$OUT/P$PP.json"
  REPORT+=("$OUT/P$PP.json")
done
run python3 -m evaluation.report mdc6 "${REPORT[@]}" --out "$OUT/report"
# the MLS each period chose at every window and the subsets it froze (from the runs' metrics.jsonl)
TRACE=()
for PP in "${PS[@]}"; do TRACE+=("P=$PP=$(run_dir "$PP")"); done
run python3 -m evaluation.mls_trace "${TRACE[@]}" --out "$OUT/report/mls_trace.md"
