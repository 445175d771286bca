#!/usr/bin/env bash
# YOCO Table 1 (spec yoco §8): prune IDC condensed sets with every rule and evaluate (ConvNet only).
# Needs the condensed sets under raid/condensed_img/ and dynamics/scores under raid/reproduce_{1,2,3}/
# (the authors' released files, or run with GENERATE=1 to make them with our scripts first).
# Usage: bash scripts/yoco_table1.sh [cifar10|cifar100|imagenet] [REPRODUCE_EXP] [EXTRA test.py flags]
# DRY_RUN=1 prints the commands and runs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
DATASET=${1:-cifar10}; EXP=${2:-reproduce_3}; shift $(( $# > 2 ? 2 : $# )) || true
case $DATASET in
  cifar10)  PAIRS="10:1 10:2 10:5 50:1 50:2 50:5 50:10" ;;
  cifar100) PAIRS="10:1 10:2 10:5 20:1 20:2 20:5 50:1 50:2 50:5 50:10" ;;
  imagenet) PAIRS="10:1 10:2 10:5 20:1 20:2 20:5" ;;
esac
KEYS="random ssp entropy accumulated_margin forgetting el2n ccs yoco"
for pair in $PAIRS; do
  IPC=${pair%%:*}; T=${pair##*:}
  if [ "${GENERATE:-0}" = 1 ]; then
    run python get_training_dynamics.py --dataset "$DATASET" --ipc "$IPC" --reproduce_exp "$EXP"
    run python generate_importance_score.py --dataset "$DATASET" --ipc "$IPC" --reproduce_exp "$EXP"
  fi
  for KEY in $KEYS; do
    run python test.py -d "$DATASET" --ipc "$IPC" --slct_ipc "$T" --pruning_key "$KEY" --reproduce_exp "$EXP" \
      --no_resnet --repeat 3 "$@"
  done
  # random selection from DREAM-condensed sets (CIFAR only)
  if [ "$DATASET" != imagenet ]; then
    run python test.py -d "$DATASET" --ipc "$IPC" --slct_ipc "$T" --pruning_key random --condense_key dream \
      --reproduce_exp "$EXP" --no_resnet --repeat 3 "$@"
  fi
done
