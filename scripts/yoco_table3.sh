#!/usr/bin/env bash
# YOCO Table 3 (spec yoco §8): cross-architecture (ConvNet-3, ResNet-10-BN, DenseNet), CIFAR-10 10 -> 1.
# Usage: bash scripts/yoco_table3.sh [REPRODUCE_EXP]; DRY_RUN=1 prints the commands and runs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
EXP=${1:-reproduce_3}
for KEY in random ssp accumulated_margin entropy forgetting el2n yoco; do
  run python test.py -d cifar10 --ipc 10 --slct_ipc 1 --pruning_key "$KEY" --reproduce_exp "$EXP" --repeat 3
done
