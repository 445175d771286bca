#!/usr/bin/env bash
# YOCO Table 5 (reference he-y/you-only-condense-once/scripts/table5.sh): balanced vs imbalanced selection, CIFAR-10 10
# -> {1, 2, 5}.
# Usage: bash scripts/yoco_table5.sh [REPRODUCE_EXP] [EXTRA test.py flags]    (default: every reproduce run the
#        authors averaged; BUDGET=paper|cpu|smoke, DEVICE, DRY_RUN=1 as in scripts/lib.sh)
# Needs the released condensed sets under raid/condensed_img/ and scores under raid/reproduce_k/ (or our
# generate_importance_score.py runs).
# Work at the paper budget: 3 runs x 3 IPC_T x 14 rules x 3 repeats of 1000-epoch evaluations.
# GPU hours: not measured yet (no GPU has been lent to this project). Report: raid/yoco_table5/yoco5.{md,csv}.
# Declarations (checked by the pre-check before anything starts, sweep/precheck.py):
#: arg REPRODUCE_EXP words:re:reproduce_[0-9]+  the reproduce runs (default: the budget's)
#: rest test.py              EXTRA test.py flags, appended to every evaluation
set -euo pipefail
source "$(dirname "$0")/lib.sh"
install_requirements
EXPS=${1:-$EXPS_DEFAULT}; shift $(( $# > 1 ? 1 : $# )) || true
for EXP in $EXPS; do
  for T in 1 2 5; do
    for BASE in random ssp accumulated_margin entropy forgetting el2n yoco; do
      for SUF in _imbalance _balance; do
        yoco_eval yoco_table5 "$EXP" -d cifar10 --ipc 10 --slct_ipc "$T" --pruning_key "$BASE$SUF" --no_resnet "$@"
      done
    done
  done
done
run python3 -m evaluation.report yoco5 raid --tag yoco_table5 --out raid/yoco_table5
