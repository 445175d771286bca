#!/usr/bin/env bash
# MDC Table 8: MDC on another initialisation / real-batch selection: IDC vs DREAM, each with and without
# MDC, CIFAR-10, IPC 10, ConvNet-3, f = 2, every prefix IPC-1 … IPC-10 evaluated:
#   IDC           Baseline C (Table 1's C run, reused)
#   IDC + MDC     Table 1's MDC run, reused                       --adaptive_reg True
#   DREAM         DREAM's k-means initialisation and real batches  -s dream (shared with Table 2)
#   DREAM + MDC   the same with MDC                                -s dream --adaptive_reg True
# Usage: bash scripts/mdc_table8.sh [dataset=cifar10] [N=10] [EXTRA condensation flags]
#        DRY_RUN=1 prints the commands and runs nothing; BUDGET=paper|cpu|smoke (scripts/lib.sh);
#        DEVICE=auto|cpu|cuda; OUT=<folder> (default raid/mdc_table8/<dataset>); RUNS=<folder> holds the
#        runs shared with other tables, C, MDC and DREAM (default Table 1's raid/mdc_table1/<dataset>);
#        runs resume (--resume).
# Work at the paper budget, N = 10: 4 condensations of 2000 outer iterations x 100 inner steps (DREAM ones
# also re-cluster each class's real images every 10 inner steps; 1 if Tables 1 and 2 have run) and
# 4N = 40 evaluations x 3 repeats x 1000 epochs. GPU hours: not measured (no GPU has been lent to this
# project); the report lands in $OUT/report/mdc8.{md,csv,png}.
# Declarations (checked by the pre-check before anything starts, sweep/precheck.py):
#: arg DATASET flag:-d       the dataset (imagenet: ImageNet-10); its values are condense_reg.py's -d
#: arg N int>=2              the IPC to condense to (MDC's subsets are IPC-1 … IPC-(N-1))
#: rest condense_reg.py      EXTRA condensation flags, appended to every condensation
#: env OUT text              the table's folder
#: env RUNS text             the folder of the runs shared between tables
set -euo pipefail
source "$(dirname "$0")/lib.sh"
DATASET=${1:-cifar10}; N=${2:-10}; shift $(( $# > 2 ? 2 : $# )) || true
OUT=${OUT:-raid/mdc_table8/$DATASET}
mdc_setup "$DATASET" "$N" "$@"
install_requirements

mdc_condense_c
mdc_condense_mdc
mdc_condense_dream
mdc_condense "$OUT/DREAM_MDC" --ipc "$N" -s dream --adaptive_reg True

mdc_prefixes IDC "$RUNS/C" "$OUT/IDC.json"
mdc_prefixes "IDC + MDC" "$RUNS/MDC" "$OUT/IDC_MDC.json"
mdc_prefixes DREAM "$RUNS/DREAM" "$OUT/DREAM.json"
mdc_prefixes "DREAM + MDC" "$OUT/DREAM_MDC" "$OUT/DREAM_MDC.json"
run python3 -m evaluation.report mdc8 "$OUT/IDC.json" "$OUT/IDC_MDC.json" "$OUT/DREAM.json" "$OUT/DREAM_MDC.json" \
  --out "$OUT/report"
