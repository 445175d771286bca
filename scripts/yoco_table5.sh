#!/usr/bin/env bash
# YOCO Table 5 (spec yoco §8): balanced vs imbalanced selection, CIFAR-10 10 -> {1, 2, 5}.
# Usage: bash scripts/yoco_table5.sh [REPRODUCE_EXP]; DRY_RUN=1 prints the commands and runs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
EXP=${1:-reproduce_3}
for T in 1 2 5; do
  for BASE in random ssp accumulated_margin entropy forgetting el2n yoco; do
    for SUF in _imbalance _balance; do
      run python test.py -d cifar10 --ipc 10 --slct_ipc "$T" --pruning_key "$BASE$SUF" --reproduce_exp "$EXP" \
        --no_resnet --repeat 3
    done
  done
done
