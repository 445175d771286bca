#!/usr/bin/env bash
# MDC Table 1 rows (spec mdc §11.6): Baselines A, B, C and MDC, evaluated at every IPC-y.
# Usage: bash scripts/mdc_table1.sh [cifar10|cifar100|svhn] [N=10] [EXTRA condensation flags]
# DRY_RUN=1 prints the commands and runs nothing.
# Full budget as in the paper (niter 2000, 1000-epoch evaluations): days on one GPU per dataset.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
DATASET=${1:-cifar10}; N=${2:-10}; shift $(( $# > 2 ? 2 : $# )) || true
OUT=raid/mdc_table1/$DATASET
C="--reproduce -d $DATASET -f 2 --eval_during False"
# Baseline A: a separate run per IPC k
for k in $(seq 1 "$N"); do run python condense_reg.py $C --ipc "$k" --save_dir "$OUT/A_ipc$k" "$@"; done
# Baseline B: N IPC-1 runs with different real-image initialisation blocks
run python condense_reg.py $C --ipc 1 --save_dir "$OUT/B" "$@"
for k in $(seq 1 $((N - 1))); do run python condense_reg.py $C --ipc 1 --start_idx "$k" --save_dir "$OUT/B_idx_$k" "$@"; done
# Baseline C and MDC: one IPC-N run each
run python condense_reg.py $C --ipc "$N" --save_dir "$OUT/C" "$@"
run python condense_reg.py $C --ipc "$N" --adaptive_reg True --save_dir "$OUT/MDC" "$@"
T="--reproduce -d $DATASET -f 2 --repeat 3"
for y in $(seq 1 "$N"); do
  run python test.py $T --ipc "$y" --test_data_dir "$OUT/A_ipc$y" --results_file "$OUT/A.json"
  run python test.py $T --ipc "$N" --ipcy "$y" --test_type baseline_b --test_data_dir "$OUT/B" --results_file "$OUT/B.json"
  run python test.py $T --ipc "$N" --ipcy "$y" --test_type cx_cy --test_data_dir "$OUT/C" --results_file "$OUT/C.json"
  run python test.py $T --ipc "$N" --ipcy "$y" --test_type cx_cy --test_data_dir "$OUT/MDC" --results_file "$OUT/MDC.json"
done
run python -m evaluation.report "A=$OUT/A.json" "B=$OUT/B.json" "C=$OUT/C.json" "MDC=$OUT/MDC.json" --plot "$OUT/table1.png"
