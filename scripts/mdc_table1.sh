#!/usr/bin/env bash
# MDC Table 1 (spec mdc §11.6): Baselines A, B, C and MDC evaluated at every IPC-y = 1 … N, then the
# table in the paper's layout (rows A/B/C/MDC, columns IPC-1 … IPC-N and Avg.) and the accuracy-vs-IPC plot.
#   A    a separate condensation per IPC k (A at IPC N is the Baseline C run: not run twice)
#   B    N IPC-1 condensations from real-image blocks 0 … N-1 (block 0 is Baseline A at IPC 1: reused)
#   C    one IPC-N condensation, its prefixes evaluated; MDC: the same with --adaptive_reg True
# Usage: bash scripts/mdc_table1.sh [cifar10|cifar100|svhn|fashion] [N=10] [EXTRA condensation flags]
#        DRY_RUN=1 prints the commands and runs nothing; BUDGET=paper|cpu|smoke (scripts/lib.sh);
#        DEVICE=auto|cpu|cuda; OUT=<folder> (default raid/mdc_table1/<dataset>); runs resume (--resume).
# Work at the paper budget, N = 10: 2N condensations of 2000 outer iterations x 100 inner steps (IPC 1 … 10)
# and 4N evaluations x 3 repeats x 1000 epochs (fewer epochs for IPC > 10). GPU hours: not measured yet
# (no GPU has been lent to this project); the report lands in $OUT/report/mdc1.{md,csv,png}.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
install_requirements
DATASET=${1:-cifar10}; N=${2:-10}; shift $(( $# > 2 ? 2 : $# )) || true
OUT=${OUT:-raid/mdc_table1/$DATASET}
C=(--reproduce -d "$DATASET" -f 2 --eval_during False "${COND_BUDGET[@]}" --device "$DEVICE")
T=(--reproduce -d "$DATASET" -f 2 --repeat 3 "${EVAL_BUDGET[@]}" --device "$DEVICE")
condense() { run python3 "${P}condense_reg.py" "${C[@]}" "$@" --resume; }
evaluate() { run python3 "${P}test.py" "${T[@]}" "$@"; }

for k in $(seq 1 $((N - 1))); do condense --ipc "$k" --save_dir "$OUT/A_ipc$k" "${@}"; done
for k in $(seq 1 $((N - 1))); do condense --ipc 1 --start_idx "$k" --save_dir "$OUT/A_ipc1_idx_$k" "${@}"; done
condense --ipc "$N" --save_dir "$OUT/C" "${@}"
condense --ipc "$N" --adaptive_reg True --save_dir "$OUT/MDC" "${@}"

for y in $(seq 1 "$N"); do
  A_RUN=$([ "$y" = "$N" ] && echo "$OUT/C" || echo "$OUT/A_ipc$y")
  evaluate --ipc "$y" --test_data_dir "$A_RUN" --run_tag A --results_file "$OUT/A.json"
  evaluate --ipc "$N" --ipcy "$y" --test_type baseline_b --test_data_dir "$OUT/A_ipc1" --run_tag B \
    --results_file "$OUT/B.json"
  for ROW in C MDC; do
    evaluate --ipc "$N" --ipcy "$y" --test_type cx_cy --test_data_dir "$OUT/$ROW" --run_tag "$ROW" \
      --results_file "$OUT/$ROW.json"
  done
done
run python3 -m evaluation.report mdc1 "$OUT/A.json" "$OUT/B.json" "$OUT/C.json" "$OUT/MDC.json" --out "$OUT/report"
