#!/usr/bin/env bash
# YOCO Table 4 (reference he-y/you-only-condense-once/scripts/table4.sh): hard vs easy samples, CIFAR-10 10 -> 1, four
# condensers.
# Usage: bash scripts/yoco_table4.sh [REPRODUCE_EXP] [EXTRA test.py flags]    (default: every reproduce run the
#        authors averaged; BUDGET=paper|cpu|smoke, DEVICE, DRY_RUN=1 as in scripts/lib.sh)
# Needs the released condensed sets under raid/condensed_img/ and scores under raid/reproduce_k/ (or our
# generate_importance_score.py runs).
# Work at the paper budget: 3 runs x 4 condensers x 7 rules x 3 repeats of 1000-epoch evaluations.
# GPU hours: not measured yet (no GPU has been lent to this project). Report: raid/yoco_table4/yoco4.{md,csv}.
# Declarations (checked by the pre-check before anything starts, sweep/precheck.py):
#: arg REPRODUCE_EXP words:re:reproduce_[0-9]+  the reproduce runs (default: the budget's)
#: rest test.py              EXTRA test.py flags, appended to every evaluation
set -euo pipefail
source "$(dirname "$0")/lib.sh"
install_requirements
EXPS=${1:-$EXPS_DEFAULT}; shift $(( $# > 1 ? 1 : $# )) || true
for EXP in $EXPS; do
  for CK in idc dream mtt dsa; do
    for KEY in accumulated_margin accumulated_margin_easy forgetting forgetting_easy el2n el2n_easy yoco; do
      yoco_eval yoco_table4 "$EXP" -d cifar10 --ipc 10 --slct_ipc 1 --pruning_key "$KEY" --condense_key "$CK" --no_resnet "$@"
    done
  done
done
run python3 -m evaluation.report yoco4 raid --tag yoco_table4 --out raid/yoco_table4
