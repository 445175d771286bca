# Sourced by every reproduction script (it changes into the project root or WORKDIR). DRY_RUN=1 prints each command the script would run, one
# shell-quoted line each, and runs nothing (no install, no training, no file written); the test
# tests/test_scripts.py parses every printed command with its script's parser, so a flag typo fails CI.

# The scripts run from the project root, or from WORKDIR when set (outputs raid/... and datasets/ are
# relative to it); the project's scripts are then called by their full path ($P prefix).
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${WORKDIR:-$ROOT}"
if [ "$PWD" = "$ROOT" ]; then P=""; else P="$ROOT/"; fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"  # python -m evaluation.report from anywhere
DEVICE=${DEVICE:-auto}

# BUDGET=paper|cpu|smoke, shared by every table script: flags appended after the script's own settings
# (explicit EXTRA flags given to a script come last and win). The same code paths run at every budget.
#   paper  the papers' settings (nothing added): GPU-days for a full table (each script states its hours)
#   cpu    the main job's budget, about an hour per table on a 2-core CPU for Fashion-MNIST: condensation
#          niter 1 x inner_loop 5 (20 outer iterations, 100 inner steps), n_data 128, batch_real 32, MLS
#          period 5, metric mse, lr_img 5e-3 (MDC's CIFAR setting); evaluations 60 epochs, 1 repeat;
#          dynamics 200 epochs, tested every 50
#   smoke  minutes in all on tiny data (CI): condensation 100 inner steps of a width-1/8 ConvNet, n_data 16,
#          batch_real 8, MLS period 1; evaluations 2 epochs, 1 repeat; dynamics 2 epochs, scores at epoch 2
#          with top-2 LBPE; YOCO averages 2 reproduce runs instead of 3
BUDGET=${BUDGET:-paper}
case $BUDGET in
  paper) COND_BUDGET=(); EVAL_BUDGET=(); DYN_BUDGET=(); SCORE_BUDGET=(); EXPS_DEFAULT="reproduce_1 reproduce_2 reproduce_3" ;;
  cpu)   COND_BUDGET=(--niter 1 --inner_loop 5 --n_data 128 --batch_real 32 --adaptive_period 5 --metric mse --lr_img 5e-3)
         EVAL_BUDGET=(--epochs 60 --repeat 1); DYN_BUDGET=(--epochs 200 --test-period 50); SCORE_BUDGET=()
         EXPS_DEFAULT="reproduce_1 reproduce_2 reproduce_3" ;;
  smoke) COND_BUDGET=(--niter 1 --inner_loop 100 --n_data 16 --batch_real 8 --adaptive_period 1 --width 0.125)
         EVAL_BUDGET=(--epochs 2 --repeat 1 --width 0.125); DYN_BUDGET=(--epochs 2 --test-period 1)
         SCORE_BUDGET=(--stop_epoch 2 --topk 2); EXPS_DEFAULT="reproduce_1 reproduce_2" ;;
  *) echo "error: BUDGET=$BUDGET is not a budget: use paper, cpu or smoke" >&2; exit 2 ;;
esac

dry() { [ "${DRY_RUN:-0}" != 0 ]; }

# run CMD ARGS...: run it, or print it under DRY_RUN
run() {
  if dry; then printf '%q ' "$@"; echo; else "$@"; fi
}

# run_tee FILE CMD ARGS...: run CMD with its output copied to FILE, or print CMD under DRY_RUN
run_tee() {
  local file=$1; shift
  if dry; then printf '%q ' "$@"; echo; else "$@" | tee "$file"; fi
}

# install the Python requirements and matplotlib into the interpreter `python3` resolves to (an activated
# virtual environment, else the system's), saying which; skipped under DRY_RUN. PyPI's torch for Linux is
# the CUDA build (~5 GB with its nvidia-* packages); a CPU-only torch installed beforehand is kept.
install_requirements() {
  dry && return 0
  [ "${INSTALL:-1}" = 0 ] && return 0  # INSTALL=0: use the interpreter as it is (tests, offline machines)
  local py
  py=$(python3 -c 'import sys; print(sys.executable)')
  if [ -z "${VIRTUAL_ENV:-}${CONDA_PREFIX:-}" ]; then
    echo "installing requirements.txt + requirements-plots.txt into $py (no virtual environment is active;" \
         "see README: Set-up)"
  else
    echo "installing requirements.txt + requirements-plots.txt into $py"
  fi
  python3 -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-plots.txt
}

# yoco_eval TABLE EXP FLAGS...: evaluate one pruned set for a YOCO table: 3 repeats at the paper budget, its
# records tagged with the table (--run_tag, own results file per condensed set) and the reproduce run EXP
yoco_eval() {
  local tag=$1 exp=$2; shift 2
  run python3 "${P}test.py" --reproduce_exp "$exp" --repeat 3 "${EVAL_BUDGET[@]}" "${SCORE_BUDGET[@]}" \
    --device "$DEVICE" --run_tag "$tag" "$@"
}

