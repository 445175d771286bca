#!/usr/bin/env bash
# YOCO Table 1 (reference he-y/you-only-condense-once/scripts/table1.sh): prune IDC condensed sets from IPC_F to IPC_T
# with every rule and evaluate (ConvNet only), for each reproduce run the authors averaged; then the table (mean ± std
# over the runs).
# Inputs: the IDC sets under raid/condensed_img/idc/ and the dynamics/scores under raid/reproduce_k/ (the
# authors' released files), or GENERATE=1 to make them here: the IDC set once per IPC_F (condense.py, if
# missing), the training dynamics once per (reproduce run, IPC_F) with the run's own seed (skipped when
# td-ipc{IPC_F}.pickle exists), and the scores, all reused for every IPC_T.
# Usage: bash scripts/yoco_table1.sh [cifar10|cifar100|imagenet] [REPRODUCE_EXP] [EXTRA test.py flags]
#        REPRODUCE_EXP: one run only (default: reproduce_1 reproduce_2 reproduce_3; the smoke budget: 1 and 2)
#        PAIRS="10:1 10:2": the (IPC_F:IPC_T) pairs (default: the paper's for the dataset)
#        DRY_RUN=1 prints the commands and runs nothing; BUDGET=paper|cpu|smoke (scripts/lib.sh); DEVICE.
# Work at the paper budget (CIFAR-10): 3 runs x 7 pairs x 9 rules x 3 repeats of 1000-epoch evaluations,
# plus with GENERATE=1 2 IDC condensations and 6 dynamics runs of 1000 epochs. GPU hours: not measured yet
# (no GPU has been lent to this project). Report (every dataset run so far):
# raid/yoco_table1/yoco1.{md,csv}.
# Declarations (checked by the pre-check before anything starts, sweep/precheck.py):
#: arg DATASET cifar10|cifar100|imagenet  the datasets of YOCO Table 1
#: arg REPRODUCE_EXP words:re:reproduce_[0-9]+  the reproduce runs (default: the budget's)
#: rest test.py              EXTRA test.py flags, appended to every evaluation
#: env PAIRS words:F:T       the (IPC_F:IPC_T) pairs
#: env GENERATE 0|1          1: make the IDC sets, dynamics and scores here
set -euo pipefail
source "$(dirname "$0")/lib.sh"
install_requirements
DATASET=${1:-cifar10}; EXPS=${2:-$EXPS_DEFAULT}; shift $(( $# > 2 ? 2 : $# )) || true
case $DATASET in
  cifar10)  DEFAULT_PAIRS="10:1 10:2 10:5 50:1 50:2 50:5 50:10"; F=2 ;;
  cifar100) DEFAULT_PAIRS="10:1 10:2 10:5 20:1 20:2 20:5 50:1 50:2 50:5 50:10"; F=2 ;;
  imagenet) DEFAULT_PAIRS="10:1 10:2 10:5 20:1 20:2 20:5"; F=3 ;;
  *) echo "error: dataset $DATASET: see the '#: arg DATASET' line above" >&2; exit 2 ;;  # (the pre-check's)
esac
PAIRS=${PAIRS:-$DEFAULT_PAIRS}
KEYS="random ssp entropy accumulated_margin forgetting el2n ccs yoco"
IPCFS=$(for p in $PAIRS; do echo "${p%%:*}"; done | awk '!seen[$0]++')
DS=(-d "$DATASET")

# where the pruning code looks for the IDC set of IPC_F (yoco/pruning.py)
set_dir() { python3 -c 'import sys; from yoco.pruning import condensed_dir; print(condensed_dir("idc", sys.argv[1], int(sys.argv[2])))' "$DATASET" "$1"; }

if [ "${GENERATE:-0}" = 1 ]; then
  for IPC in $IPCFS; do
    SET=$(set_dir "$IPC")
    if dry || [ ! -e "$SET" ]; then
      run python3 "${P}condense.py" --reproduce_condense "${DS[@]}" -f "$F" --ipc "$IPC" --eval_during False \
        "${COND_BUDGET[@]}" --device "$DEVICE" --save_dir "$SET" --resume
    fi
    for EXP in $EXPS; do
      TD=raid/$EXP/dynamics_and_scores/idc/${DATASET/imagenet/imagenet10}/ipc$IPC/td-ipc$IPC.pickle
      if dry || [ ! -e "$TD" ]; then
        run python3 "${P}get_training_dynamics.py" "${DS[@]}" --ipc "$IPC" --reproduce_exp "$EXP" \
          "${DYN_BUDGET[@]}" --device "$DEVICE"
      fi
      run python3 "${P}generate_importance_score.py" "${DS[@]}" --ipc "$IPC" --reproduce_exp "$EXP" \
        "${SCORE_BUDGET[@]}" --device "$DEVICE"
    done
  done
fi

for EXP in $EXPS; do
  for pair in $PAIRS; do
    IPC=${pair%%:*}; T=${pair##*:}
    for KEY in $KEYS; do
      yoco_eval yoco_table1 "$EXP" "${DS[@]}" --ipc "$IPC" --slct_ipc "$T" --pruning_key "$KEY" --no_resnet "$@"
    done
    # random selection from DREAM-condensed sets (CIFAR only; skipped when the DREAM set is not there)
    DREAM=raid/condensed_img/dream/$DATASET/ipc$IPC
    if [ "$DATASET" != imagenet ] && { dry || [ -e "$DREAM" ]; }; then
      yoco_eval yoco_table1 "$EXP" "${DS[@]}" --ipc "$IPC" --slct_ipc "$T" --pruning_key random --condense_key dream \
        --no_resnet "$@"
    elif [ "$DATASET" != imagenet ]; then
      echo "no DREAM set at $DREAM: the Random (DREAM) row is left out"
    fi
  done
done
run python3 -m evaluation.report yoco1 raid --tag yoco_table1 --out raid/yoco_table1
