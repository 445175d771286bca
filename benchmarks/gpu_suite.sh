#!/usr/bin/env bash
# Every benchmark on the GPU, unattended, in under 10 minutes; one table at the end (benchmarks/suite_table.py),
# with the full-preset CIFAR-10 IPC-10 MDC condensation time extrapolated from the measured inner steps.
# Run it whenever a GPU is available, and commit its output (results/benchmarks/) with the GPU's name.
#
# Usage: bash benchmarks/gpu_suite.sh [OUT_DIR]     (default results/benchmarks/gpu_<date>)
#        DEVICE=cuda (default; DEVICE=cpu runs the same suite on the CPU, slowly), REPS=5,
#        DRY_RUN=1 checks every command's arguments (each benchmark's --dry-run) without running anything.
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
REPS=${REPS:-5}
OUT=${1:-results/benchmarks/gpu_$(date +%Y%m%d_%H%M)}
PY=${PYTHON:-python3}
dry() { [ "${DRY_RUN:-0}" = 1 ]; }
fail=0
bench() {  # NAME SECONDS ARGS...: one benchmark under a time limit; its output is kept in OUT/NAME.txt
  local name=$1 limit=$2; shift 2
  if dry; then
    echo "$PY $*"
    "$PY" "$@" --dry-run || { echo "error: $name: bad arguments"; fail=1; }
    return
  fi
  echo "== $name (limit ${limit} s) =="
  timeout "$limit" "$PY" "$@" 2>"$OUT/$name.err" | tee "$OUT/$name.txt" || { echo "error: $name failed or ran out of time (see $OUT/$name.err)"; fail=1; }
}
dry || mkdir -p "$OUT"
if ! dry && [ "$DEVICE" = cuda ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt" || { echo "error: no GPU (nvidia-smi failed); use DEVICE=cpu"; exit 1; }
fi
bench condense_step 240 benchmarks/condense_step.py --device "$DEVICE" --reps "$REPS" --json "$OUT/condense_step.json"
bench condense_step_idc 120 benchmarks/condense_step.py --device "$DEVICE" --reps "$REPS" --mls 0 --paths "default,class-batched,bf16" --json "$OUT/condense_step_idc.json"
bench eval_epoch 150 benchmarks/eval_epoch.py --device "$DEVICE" --reps "$REPS" --compile --json "$OUT/eval_epoch.json"
bench dynamics 60 benchmarks/dynamics.py --device "$DEVICE" --epochs 3
NGPU=$( (nvidia-smi -L 2>/dev/null || true) | grep -c '^GPU' || true)
if dry || [ "${NGPU:-0}" -ge 2 ]; then
  bench parallel 150 benchmarks/parallel.py --device "$DEVICE" --repeats 2 --iters 2
else
  echo "(benchmarks/parallel.py skipped: it needs 2 GPUs, found ${NGPU:-0})"
fi
dry && exit $fail
"$PY" benchmarks/suite_table.py "$OUT" | tee "$OUT/table.md"
exit $fail
