#!/usr/bin/env bash
# MDC Table 5: the measure the MLS is chosen from, CIFAR-10, IPC 10, ConvNet-3, f = 2, every prefix
# IPC-1 … IPC-10 evaluated; all rows are MDC (--adaptive_reg True, MLS by the largest change, freezing):
#   feature   feature distance (MDC itself: Table 1's MDC run, reused)   --mls_metric feature
#   gradient  gradient-matching distance                                  --mls_metric gradient
#   accuracy  nearest-class-mean accuracy on a fixed real batch           --mls_metric accuracy
# Usage: bash scripts/mdc_table5.sh [dataset=cifar10] [N=10] [EXTRA condensation flags]
#        DRY_RUN=1 prints the commands and runs nothing; BUDGET=paper|cpu|smoke (scripts/lib.sh);
#        DEVICE=auto|cpu|cuda; OUT=<folder> (default raid/mdc_table5/<dataset>); RUNS=<folder> holds the
#        MDC run (default Table 1's raid/mdc_table1/<dataset>); runs resume (--resume).
# Work at the paper budget, N = 10: 3 condensations of 2000 outer iterations x 100 inner steps (2 if Table 1
# has run: "feature" is its MDC run) and 3N = 30 evaluations x 3 repeats x 1000 epochs. GPU hours: not
# measured (no GPU has been lent to this project); the report lands in $OUT/report/mdc5.{md,csv,png}.
# Declarations (checked by the pre-check before anything starts, sweep/precheck.py):
#: arg DATASET flag:-d       the dataset (imagenet: ImageNet-10); its values are condense_reg.py's -d
#: arg N int>=2              the IPC to condense to (MDC's subsets are IPC-1 … IPC-(N-1))
#: rest condense_reg.py      EXTRA condensation flags, appended to every condensation
#: env OUT text              the table's folder
#: env RUNS text             the folder of the runs shared between tables
set -euo pipefail
source "$(dirname "$0")/lib.sh"
DATASET=${1:-cifar10}; N=${2:-10}; shift $(( $# > 2 ? 2 : $# )) || true
OUT=${OUT:-raid/mdc_table5/$DATASET}
mdc_setup "$DATASET" "$N" "$@"
install_requirements

mdc_condense_mdc  # the feature row: --mls_metric feature is MDC's default
for METRIC in gradient accuracy; do
  mdc_condense "$OUT/$METRIC" --ipc "$N" --adaptive_reg True --mls_metric "$METRIC"
done

mdc_prefixes feature "$RUNS/MDC" "$OUT/feature.json"
for METRIC in gradient accuracy; do mdc_prefixes "$METRIC" "$OUT/$METRIC" "$OUT/$METRIC.json"; done
run python3 -m evaluation.report mdc5 "$OUT/feature.json" "$OUT/gradient.json" "$OUT/accuracy.json" --out "$OUT/report"
# the MLS each measure chose at every window and the subsets it froze (from the runs' metrics.jsonl)
run python3 -m evaluation.mls_trace "feature=$RUNS/MDC" "gradient=$OUT/gradient" "accuracy=$OUT/accuracy" \
  --out "$OUT/report/mls_trace.md"
