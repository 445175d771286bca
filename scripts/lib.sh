# Sourced by every reproduction script (it changes into the project root or WORKDIR). Dry runs print the
# commands and run nothing (no install, no training, no file written):
#   DRY_RUN=1     for people: each command one shell-quoted line (`printf %q`), paste-able into a shell
#   DRY_RUN=jobs  for programs (python -m sweep, its Slurm backend, the tests): each command one JSON
#                 object on a line of its own, {"argv", "cwd", "env", "kind", "stage", "program"[, "tee"]}
#                 (docs/reproducing.md: "The job list"); the script's other output lines are notes
# Before anything starts every command is parsed by its program's parser (the pre-check below), so a flag typo
# fails at once (and in CI: tests/test_scripts.py, tests/test_table_precheck.py).

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# The pre-check (sweep/precheck.py; docs/reproducing.md#the-pre-check): before anything starts, the script's
# arguments and switches are checked against their `#:` declarations (the script's and these), and every job
# of its job list is parsed by the parser of the program it calls; a bad one is one `error:` line, exit 2.
# Dry runs check the parse; a real run (and python -m sweep) also runs each program's pre-work checks.
# The switches every script reads, with their values (the only list of them):
#: env DEVICE auto|cpu|cuda     the jobs' --device
#: env BUDGET paper|cpu|smoke   the budget (below)
#: env DRY_RUN 0|1|jobs         print the commands, run nothing (above)
#: env INSTALL 0|1              0: no pip install (install_requirements)
#: env WORKDIR dir              the folder the commands run in (default the project root)
#: env VAL_PER_CLASS flag:--val_per_class  K: every test.py job holds out K training images per class (below)
_PRE_CWD=$PWD; _PRE_SCRIPT=$0; _PRE_ARGS=("$@")  # a sourced file sees the script's arguments
_precheck() {
  (cd "$_PRE_CWD" && PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" python3 -m sweep.precheck "$@" "$_PRE_SCRIPT" \
    "${_PRE_ARGS[@]}") || exit $?
}
_PRECHECK_PENDING=0
if [ -z "${_MDC_PRECHECKED:-}" ]; then  # (set for the dry run the pre-check itself reads)
  if [ "${DRY_RUN:-0}" != 0 ]; then
    if [ "${_MDC_PRECHECK_DEEP:-0}" = 1 ]; then _precheck --deep; else _precheck; fi
  elif [ "${INSTALL:-1}" = 0 ] || python3 -c 'import importlib.util as u, sys
sys.exit(not all(u.find_spec(m) for m in ("yaml", "torch")))' 2>/dev/null; then
    _precheck --deep
  else
    _PRECHECK_PENDING=1  # the requirements are missing: checked right after install_requirements installs them
  fi
fi
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
  *) echo "error: BUDGET=$BUDGET is not a budget: see its '#: env BUDGET' line above" >&2; exit 2 ;;
esac
# VAL_PER_CLASS=K (any budget): every test.py job gets --val_per_class K, so its records also hold the test accuracy
# at the best epoch on K held-out training images per class (docs/evaluating.md#held-out-validation); unset or 0:
# the papers' protocol, nothing added. EVAL_VAL alone: for a test.py job built without EVAL_BUDGET
EVAL_VAL=(${VAL_PER_CLASS:+--val_per_class "$VAL_PER_CLASS"})
EVAL_BUDGET+=("${EVAL_VAL[@]}")

dry() { [ "${DRY_RUN:-0}" != 0 ]; }

# ---- DRY_RUN=jobs: the job list --------------------------------------------------------------------------
# _json_str S: S as a JSON string literal, into _J (backslash, quote and control characters escaped)
_json_str() {
  local s=$1 c ch
  s=${s//\\/\\\\}; s=${s//\"/\\\"}; s=${s//$'\n'/\\n}; s=${s//$'\t'/\\t}; s=${s//$'\r'/\\r}
  if [[ $s == *[$'\x01'-$'\x1f']* ]]; then
    for c in {1..31}; do printf -v ch "\\x$(printf %02x "$c")"; s=${s//"$ch"/$(printf '\\u%04x' "$c")}; done
  fi
  _J="\"$s\""
}

# _program ARGV...: the program a command runs, into _PROG: `python -m X` -> X, `python [opts] dir/x.py` ->
# x.py, anything else -> its executable's name (rm). Commands with a --device flag are jobs (they train or
# score on a device: one GPU each), the others steps. A stage is a maximal run of consecutive commands of
# one program and kind: stages run in order, the jobs of a stage in parallel (no job of a stage reads what
# another job of it writes: tests/test_sweep.py checks every script).
_program() {
  local exe=${1##*/} i=1 a=("$@")
  _PROG=$exe
  [[ $exe =~ ^python[0-9.]*$ ]] || return 0
  while [ "$i" -lt "${#a[@]}" ]; do
    case ${a[i]} in
      -m) _PROG=${a[i+1]-$exe}; return 0 ;;
      -c) _PROG="python -c"; return 0 ;;
      -W|-X) i=$((i + 2)) ;;
      -*) i=$((i + 1)) ;;
      *) _PROG=${a[i]##*/}; return 0 ;;
    esac
  done
}

_JOB_STAGE=0; _JOB_STAGE_KEY=""
# _job_record [--tee FILE] ARGV...: print the command as one JSON object (DRY_RUN=jobs)
_job_record() {
  local tee="" kind=step a out
  if [ "$1" = --tee ]; then tee=$2; shift 2; fi
  _program "$@"
  for a in "$@"; do case $a in --device|--device=*) kind=job ;; esac; done
  if [ "$_PROG/$kind" != "$_JOB_STAGE_KEY" ]; then _JOB_STAGE=$((_JOB_STAGE + 1)); _JOB_STAGE_KEY="$_PROG/$kind"; fi
  out='{"argv": ['
  for a in "$@"; do _json_str "$a"; out+="$_J, "; done
  out="${out%, }], \"cwd\": "; _json_str "$PWD"; out+="$_J, \"env\": {\"PYTHONPATH\": "
  _json_str "$PYTHONPATH"; out+="$_J}, \"kind\": \"$kind\", \"stage\": $_JOB_STAGE, \"program\": "
  _json_str "$_PROG"; out+="$_J"
  if [ -n "$tee" ]; then _json_str "$tee"; out+=", \"tee\": $_J"; fi
  printf '%s}\n' "$out"
}

# run CMD ARGS...: run it, or print it under DRY_RUN (=1: a shell line; =jobs: a JSON object)
run() {
  if [ "${DRY_RUN:-0}" = jobs ]; then _job_record "$@"
  elif dry; then printf '%q ' "$@"; echo
  else "$@"; fi
}

# run_tee FILE CMD ARGS...: run CMD with its output copied to FILE, or print CMD under DRY_RUN
run_tee() {
  local file=$1; shift
  if [ "${DRY_RUN:-0}" = jobs ]; then _job_record --tee "$file" "$@"
  elif dry; then printf '%q ' "$@"; echo
  else "$@" | tee "$file"; fi
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
  if [ "$_PRECHECK_PENDING" = 1 ]; then _PRECHECK_PENDING=0; _precheck --deep; fi
}

# yoco_eval TABLE EXP FLAGS...: evaluate one pruned set for a YOCO table: 3 repeats at the paper budget, its
# records tagged with the table (--run_tag, own results file per condensed set) and the reproduce run EXP
yoco_eval() {
  local tag=$1 exp=$2; shift 2
  run python3 "${P}test.py" --reproduce_exp "$exp" --repeat 3 "${EVAL_BUDGET[@]}" "${SCORE_BUDGET[@]}" \
    --device "$DEVICE" --run_tag "$tag" "$@"
}


# ---- MDC tables (scripts/mdc_table*.sh) -----------------------------------------------------------------
# mdc_setup DATASET N [EXTRA condensation flags...]: the settings every MDC table shares, for DATASET
# condensed to IPC N (N >= 2: MDC's subsets are IPC-1 … IPC-(N-1)):
#   MDC_DATA   -d DATASET; imagenet is ImageNet-10 (-d imagenet --nclass 10; ResNetAP-10 by the presets)
#   MDC_F      the multi-formation factor: 3 for ImageNet, else 2 (IDC's convention, reference
#              he-y/Multisize-Dataset-Condensation/misc/reproduce.py, set_arguments)
#   MDC_COND   condensation: --reproduce presets, -f, no in-run evaluations, the budget, the device
#   MDC_EVAL   test.py: --reproduce presets, -f, 3 repeats, the budget, the device
#   RUNS       the runs several tables share (Baseline A, B's blocks, Baseline C, plain MDC, DREAM): Table 1's
#              folder raid/mdc_table1/DATASET unless RUNS is set. A table that needs one of them condenses
#              it there with the same command (Table 1's, for A/B/C/MDC) and --resume: whichever table runs first
#              condenses it, the others find it complete ("nothing to do"); nothing is condensed twice.
mdc_setup() {
  MDC_DATASET=$1; MDC_N=$2; shift 2
  MDC_EXTRA=("$@")
  # DATASET and N (N >= 2: MDC's subsets are IPC-1 … IPC-(N-1)) are checked by the pre-check against the
  # script's `#: arg` lines; the fallback below is reached only without it
  case $MDC_DATASET in
    imagenet) MDC_DATA=(-d imagenet --nclass 10); MDC_F=3 ;;
    *) MDC_DATA=(-d "$MDC_DATASET"); MDC_F=2 ;;
  esac
  case $MDC_N in ''|*[!0-9]*) echo "error: N=$MDC_N: see the script's '#: arg N' line" >&2; exit 2 ;; esac
  MDC_COND=(--reproduce "${MDC_DATA[@]}" -f "$MDC_F" --eval_during False "${COND_BUDGET[@]}" --device "$DEVICE")
  MDC_EVAL=(--reproduce "${MDC_DATA[@]}" -f "$MDC_F" --repeat 3 "${EVAL_BUDGET[@]}" --device "$DEVICE")
  RUNS=${RUNS:-raid/mdc_table1/$MDC_DATASET}
}

# mdc_condense FOLDER ROW FLAGS...: one condensation into FOLDER, resumable: the shared flags and the budget
# first, then the row's own settings (so a row's --adaptive_period wins over the budget's), then the user's
# EXTRA flags (last, they win over everything). --lock_wait -1: when another table is condensing the same
# shared run right now (sweep.local, Slurm), wait for it, then find it complete
mdc_condense() {
  local dir=$1; shift
  run python3 "${P}condense_reg.py" "${MDC_COND[@]}" "$@" "${MDC_EXTRA[@]}" --save_dir "$dir" --resume --lock_wait -1
}

# the runs shared between tables (in RUNS): Baseline C (= IDC), plain MDC and DREAM (IDC with DREAM's
# k-means initialisation and real batches, Tables 2 and 8) at IPC N
mdc_condense_c() { mdc_condense "$RUNS/C" --ipc "$MDC_N"; }
mdc_condense_mdc() { mdc_condense "$RUNS/MDC" --ipc "$MDC_N" --adaptive_reg True; }
mdc_condense_dream() { mdc_condense "$RUNS/DREAM" --ipc "$MDC_N" -s dream; }

# mdc_eval FLAGS...: one test.py evaluation (its records tagged and filed by the caller)
mdc_eval() { run python3 "${P}test.py" "${MDC_EVAL[@]}" "$@"; }

# mdc_prefixes LABEL SET RESULTS [FLAGS...]: every prefix IPC-y = 1 … N of the IPC-N set SET (cx_cy), tagged
# with the table row LABEL (--run_tag) into the results file RESULTS
mdc_prefixes() {
  local tag=$1 dir=$2 file=$3 y; shift 3
  for y in $(seq 1 "$MDC_N"); do
    mdc_eval --ipc "$MDC_N" --ipcy "$y" --test_type cx_cy --test_data_dir "$dir" --run_tag "$tag" \
      --results_file "$file" "$@"
  done
}

# mdc_abc_condense: the condensations of Baselines A, B, C and MDC (docs/algorithms.md#baselines-a-b-c-and-mdc) in RUNS:
# A at IPC k = 1 … N-1 (A at IPC N is the Baseline C run), B's blocks 1 … N-1 (B's block 0 is A at IPC 1), C, MDC
mdc_abc_condense() {
  local k
  for k in $(seq 1 $((MDC_N - 1))); do mdc_condense "$RUNS/A_ipc$k" --ipc "$k"; done
  for k in $(seq 1 $((MDC_N - 1))); do mdc_condense "$RUNS/A_ipc1_idx_$k" --ipc 1 --start_idx "$k"; done
  mdc_condense_c
  mdc_condense_mdc
}

# mdc_abc_eval OUT [FLAGS...]: rows A, B, C, MDC at every IPC-y into OUT/{A,B,C,MDC}.json
mdc_abc_eval() {
  local out=$1 y a; shift
  for y in $(seq 1 "$MDC_N"); do
    a=$([ "$y" = "$MDC_N" ] && echo "$RUNS/C" || echo "$RUNS/A_ipc$y")
    mdc_eval --ipc "$y" --test_data_dir "$a" --run_tag A --results_file "$out/A.json" "$@"
    mdc_eval --ipc "$MDC_N" --ipcy "$y" --test_type baseline_b --test_data_dir "$RUNS/A_ipc1" --run_tag B \
      --results_file "$out/B.json" "$@"
  done
  mdc_prefixes C "$RUNS/C" "$out/C.json" "$@"
  mdc_prefixes MDC "$RUNS/MDC" "$out/MDC.json" "$@"
}
