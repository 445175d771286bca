#!/usr/bin/env bash
# YOCO Table 2 (spec yoco §8): balanced construction across condensers, CIFAR-10 IPC 10 -> 1.
# Usage: bash scripts/yoco_table2.sh [REPRODUCE_EXP]; DRY_RUN=1 prints the commands and runs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
EXP=${1:-reproduce_3}
for CK in idc dream mtt kip; do
  for KEY in random random_balance yoco_imbalance yoco; do
    run python test.py -d cifar10 --ipc 10 --slct_ipc 1 --pruning_key "$KEY" --condense_key "$CK" \
      --reproduce_exp "$EXP" --no_resnet --repeat 3
  done
done
