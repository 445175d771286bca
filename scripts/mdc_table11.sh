#!/usr/bin/env bash
# MDC Table 11: one MLS per class (--adaptive_class_wise) vs one MLS for all classes (MDC), CIFAR-10, IPC 10,
# ConvNet-3, f = 2, every prefix IPC-1 … IPC-10 evaluated:
#   C               Baseline C (Table 1's C run, reused)
#   MDC             one MLS for all classes (Table 1's MDC run, reused)   --adaptive_reg True
#   MDC class-wise  one MLS per class                                     --adaptive_reg True --adaptive_class_wise
# Usage: bash scripts/mdc_table11.sh [dataset=cifar10] [N=10] [EXTRA condensation flags]
#        DRY_RUN=1 prints the commands and runs nothing; BUDGET=paper|cpu|smoke (scripts/lib.sh);
#        DEVICE=auto|cpu|cuda; OUT=<folder> (default raid/mdc_table11/<dataset>); RUNS=<folder> holds the
#        C and MDC runs (default Table 1's raid/mdc_table1/<dataset>); runs resume (--resume).
# Work at the paper budget, N = 10: 3 condensations of 2000 outer iterations x 100 inner steps (1 if Table 1
# has run) and 3N = 30 evaluations x 3 repeats x 1000 epochs. GPU hours: not measured (no GPU has been
# lent to this project); the report lands in $OUT/report/mdc11.{md,csv,png}.
# Declarations (checked by the pre-check before anything starts, sweep/precheck.py):
#: arg DATASET flag:-d       the dataset (imagenet: ImageNet-10); its values are condense_reg.py's -d
#: arg N int>=2              the IPC to condense to (MDC's subsets are IPC-1 … IPC-(N-1))
#: rest condense_reg.py      EXTRA condensation flags, appended to every condensation
#: env OUT text              the table's folder
#: env RUNS text             the folder of the runs shared between tables
set -euo pipefail
source "$(dirname "$0")/lib.sh"
DATASET=${1:-cifar10}; N=${2:-10}; shift $(( $# > 2 ? 2 : $# )) || true
OUT=${OUT:-raid/mdc_table11/$DATASET}
mdc_setup "$DATASET" "$N" "$@"
install_requirements

mdc_condense_c
mdc_condense_mdc
mdc_condense "$OUT/MDC_class_wise" --ipc "$N" --adaptive_reg True --adaptive_class_wise

mdc_prefixes C "$RUNS/C" "$OUT/C.json"
mdc_prefixes MDC "$RUNS/MDC" "$OUT/MDC.json"
mdc_prefixes "MDC class-wise" "$OUT/MDC_class_wise" "$OUT/MDC_class_wise.json"
run python3 -m evaluation.report mdc11 "$OUT/C.json" "$OUT/MDC.json" "$OUT/MDC_class_wise.json" --out "$OUT/report"
