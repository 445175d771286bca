#!/usr/bin/env bash
# MDC Table 3: the components of the adaptive subset loss (MLS "Calculate, Compare, Freeze"), CIFAR-10,
# IPC 10, ConvNet-3, f = 2, every prefix IPC-1 … IPC-10 evaluated (rows in the paper's order):
#   C         Baseline C: no subset loss (Table 1's C run, reused)
#   random    the MLS drawn at random, no freezing       --adaptive_reg True --mls_select random   --mls_freeze False
#   distance  the largest feature distance, no freezing  --adaptive_reg True --mls_select distance --mls_freeze False
#   change    the largest change of it, no freezing      --adaptive_reg True --mls_select change   --mls_freeze False
#   MDC       change + freezing = MDC (Table 1's MDC run, reused)    --adaptive_reg True
# Usage: bash scripts/mdc_table3.sh [dataset=cifar10] [N=10] [EXTRA condensation flags]
#        DRY_RUN=1 prints the commands and runs nothing; BUDGET=paper|cpu|smoke (scripts/lib.sh);
#        DEVICE=auto|cpu|cuda; OUT=<folder> (default raid/mdc_table3/<dataset>); RUNS=<folder> holds the
#        C and MDC runs (default Table 1's raid/mdc_table1/<dataset>: set it when EXTRA flags differ from
#        Table 1's run); runs resume (--resume).
# Work at the paper budget, N = 10: 5 condensations of 2000 outer iterations x 100 inner steps (3 if Table 1
# has run: C and MDC are its runs) and 5N = 50 evaluations x 3 repeats x 1000 epochs. GPU hours: not
# measured (no GPU has been lent to this project); the report lands in $OUT/report/mdc3.{md,csv,png}.
# Declarations (checked by the pre-check before anything starts, sweep/precheck.py):
#: arg DATASET flag:-d       the dataset (imagenet: ImageNet-10); its values are condense_reg.py's -d
#: arg N int>=2              the IPC to condense to (MDC's subsets are IPC-1 … IPC-(N-1))
#: rest condense_reg.py      EXTRA condensation flags, appended to every condensation
#: env OUT text              the table's folder
#: env RUNS text             the folder of the runs shared between tables
set -euo pipefail
source "$(dirname "$0")/lib.sh"
DATASET=${1:-cifar10}; N=${2:-10}; shift $(( $# > 2 ? 2 : $# )) || true
OUT=${OUT:-raid/mdc_table3/$DATASET}
mdc_setup "$DATASET" "$N" "$@"
install_requirements

mdc_condense_c
for SELECT in random distance change; do
  mdc_condense "$OUT/$SELECT" --ipc "$N" --adaptive_reg True --mls_select "$SELECT" --mls_freeze False
done
mdc_condense_mdc

mdc_prefixes C "$RUNS/C" "$OUT/C.json"
for SELECT in random distance change; do mdc_prefixes "$SELECT" "$OUT/$SELECT" "$OUT/$SELECT.json"; done
mdc_prefixes MDC "$RUNS/MDC" "$OUT/MDC.json"
run python3 -m evaluation.report mdc3 "$OUT/C.json" "$OUT/random.json" "$OUT/distance.json" "$OUT/change.json" \
  "$OUT/MDC.json" --out "$OUT/report"
# the MLS each MDC row chose at every window and the subsets it froze (from the runs' metrics.jsonl)
run python3 -m evaluation.mls_trace "random=$OUT/random" "distance=$OUT/distance" "change=$OUT/change" \
  "MDC=$RUNS/MDC" --out "$OUT/report/mls_trace.md"
