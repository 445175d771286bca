#!/usr/bin/env bash
# YOCO end to end on real Fashion-MNIST, CPU-sized budget:
#   1. condense.py (plain IDC): IPC 10, f = 2, --niter 1 --inner_loop 5 (100 inner steps), --n_data 128,
#      metric mse, lr_img 5e-3;
#   2. get_training_dynamics.py: 200 epochs (not 1000), test every 50 epochs;
#   3. generate_importance_score.py: LBPE epochs chosen in [0, 100), top-10;
#   4. test.py --slct_ipc T for T in 1 2 5 and the keys yoco, random, random_balance, el2n,
#      forgetting, ccs (cut-off ratios of CIFAR-10's table: 0.3 / 0.1 / 0.0), ConvNet-3 only,
#      60 evaluation epochs, 4 validations, --repeat 1.
# Usage: bash scripts/yoco_fashion.sh [OUT_DIR]     (default raid/yoco_fashion; DRY_RUN=1 prints the commands)
# Declarations (checked by the pre-check before anything starts, sweep/precheck.py):
#: arg OUT_DIR text          where the results go (default raid/yoco_fashion)
#: env EPOCHS flag:--epochs  evaluation epochs (test.py's --epochs)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
install_requirements
OUT=${1:-raid/yoco_fashion}
EPOCHS=${EPOCHS:-60}
start=$(date +%s)
run python3 "${P}condense.py" --reproduce_condense -d fashion -f 2 --ipc 10 --metric mse --lr_img 5e-3 --niter 1 \
  --inner_loop 5 --n_data 128 --eval_during False --device "$DEVICE" --save_dir "$OUT/condensed" --resume
run python3 "${P}get_training_dynamics.py" -d fashion --ipc 10 --custom-data-dir "$OUT/condensed" --epochs 200 \
  --test-period 50 --base-dir "$OUT/dynamics" --device "$DEVICE" --compact also --resume
run python3 "${P}generate_importance_score.py" -d fashion --ipc 10 --custom-data-dir "$OUT/condensed" \
  --base-dir "$OUT/dynamics" --stop_epoch 100 --device "$DEVICE"
SCORES="$OUT/dynamics/ipc10/data-score-ipc10-ep100.pickle"
run rm -f "$OUT/results.json" "$OUT/full.json"
# the unpruned IPC-10 set, for reference
run python3 "${P}test.py" -d fashion -f 2 --ipc 10 --test_data_dir "$OUT/condensed" --epochs "$EPOCHS" --repeat 1 \
  "${EVAL_VAL[@]}" --device "$DEVICE" --results_file "$OUT/full.json"
for T in 1 2 5; do
  case $T in 1) R=0.3 ;; 2) R=0.1 ;; 5) R=0.0 ;; esac
  for KEY in yoco random random_balance el2n forgetting ccs; do
    CUT=(); [ "$KEY" = ccs ] && CUT=(--prune_score_ratio "$R")  # the cut-off is read by ccs only
    run python3 "${P}test.py" -d fashion -f 2 --ipc 10 --slct_ipc "$T" --pruning_key "$KEY" --test_data_dir "$OUT/condensed" \
      --score_file "$SCORES" "${CUT[@]}" --no_resnet --epochs "$EPOCHS" --repeat 1 "${EVAL_VAL[@]}" \
      --device "$DEVICE" --results_file "$OUT/results.json"
  done
done
run_tee "$OUT/table.md" python3 -m evaluation.report yoco1 "$OUT/results.json" --out "$OUT/report"
echo "total wall time: $(( $(date +%s) - start )) s"
