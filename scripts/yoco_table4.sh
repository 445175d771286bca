#!/usr/bin/env bash
# YOCO Table 4 (spec yoco §8): hard vs easy samples, CIFAR-10 10 -> 1, four condensers.
# Usage: bash scripts/yoco_table4.sh [REPRODUCE_EXP]; DRY_RUN=1 prints the commands and runs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
EXP=${1:-reproduce_3}
for CK in idc dream mtt dsa; do
  for KEY in accumulated_margin accumulated_margin_easy forgetting forgetting_easy el2n el2n_easy yoco; do
    run python test.py -d cifar10 --ipc 10 --slct_ipc 1 --pruning_key "$KEY" --condense_key "$CK" \
      --reproduce_exp "$EXP" --no_resnet --repeat 3
  done
done
