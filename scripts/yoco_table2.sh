#!/usr/bin/env bash
# YOCO Table 2 (reference he-y/you-only-condense-once/scripts/table2.sh): balanced construction across condensers,
# CIFAR-10 IPC 10 -> 1.
# Usage: bash scripts/yoco_table2.sh [REPRODUCE_EXP] [EXTRA test.py flags]    (default: every reproduce run the
#        authors averaged; BUDGET=paper|cpu|smoke, DEVICE, DRY_RUN=1 as in scripts/lib.sh)
# Needs the released condensed sets under raid/condensed_img/ and scores under raid/reproduce_k/ (or our
# generate_importance_score.py runs).
# Work at the paper budget: 3 runs x 4 condensers x 4 rules x 3 repeats of 1000-epoch evaluations.
# GPU hours: not measured yet (no GPU has been lent to this project). Report: raid/yoco_table2/yoco2.{md,csv}.
# Declarations (checked by the pre-check before anything starts, sweep/precheck.py):
#: arg REPRODUCE_EXP words:re:reproduce_[0-9]+  the reproduce runs (default: the budget's)
#: rest test.py              EXTRA test.py flags, appended to every evaluation
set -euo pipefail
source "$(dirname "$0")/lib.sh"
install_requirements
EXPS=${1:-$EXPS_DEFAULT}; shift $(( $# > 1 ? 1 : $# )) || true
for EXP in $EXPS; do
  for CK in idc dream mtt kip; do
    for KEY in random random_balance yoco_imbalance yoco; do
      yoco_eval yoco_table2 "$EXP" -d cifar10 --ipc 10 --slct_ipc 1 --pruning_key "$KEY" --condense_key "$CK" --no_resnet "$@"
    done
  done
done
run python3 -m evaluation.report yoco2 raid --tag yoco_table2 --out raid/yoco_table2
