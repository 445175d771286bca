# Sourced by every reproduction script. DRY_RUN=1 prints each command the script would run, one
# shell-quoted line each, and runs nothing (no install, no training, no file written); the test
# tests/test_scripts.py parses every printed command with its script's parser, so a flag typo fails CI.

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
