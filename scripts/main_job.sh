#!/usr/bin/env bash
# The main job on the embedded default, real Fashion-MNIST (Debian package dataset-fashion-mnist):
# MDC and Baseline C, each condensed once at IPC 4 (f = 2), then every prefix IPC-1 … IPC-4 of both
# evaluated, the tables printed (best-on-test, best-on-validation, last) and (with matplotlib) a plot written.
#
# REDUCED BUDGET: BUDGET=cpu of scripts/lib.sh (the default here), sized to finish in about 15 minutes on a
# 2-core CPU (the paper's budget is niter 2000 x 100 inner steps and 1000-epoch evaluations, i.e. GPU-days):
#   condensation: --niter 1 --inner_loop 5 (20 outer iterations = 100 inner steps), --n_data 128,
#                 --batch_real 32, MLS period --adaptive_period 5, metric mse and lr_img 5e-3 (MDC's CIFAR
#                 setting; the same for both runs), ConvNet-3, everything else as --reproduce;
#   evaluation:   ConvNet-3, 60 epochs (LR x0.2 at 40 and 50), DSA + CutMix, 4 validations on the
#                 10 000 test images, --repeat 2, and 200 held-out training images per class
#                 (VAL_PER_CLASS, default 200 here; 0 = none), so every cell is reported three ways:
#                 best-on-test (the papers'), best-on-validation and last (docs/evaluating.md#held-out-validation).
# Usage: bash scripts/main_job.sh [OUT_DIR]        (default raid/main_job; DRY_RUN=1 prints the commands)
#        DEVICE=auto|cpu|cuda (default auto), EPOCHS=<evaluation epochs> (default 60), BUDGET=cpu|smoke|paper,
#        PRECISION=fp32|tf32|bf16 (default fp32: the faithful arithmetic; docs/benchmarks.md)
# Declarations (checked by the pre-check before anything starts, sweep/precheck.py):
#: arg OUT_DIR text          where the results go (default raid/main_job)
#: env EPOCHS flag:--epochs  evaluation epochs (test.py's --epochs)
#: env PRECISION flag:--precision  the arithmetic of every job (--precision)
set -euo pipefail
BUDGET=${BUDGET:-cpu}
VAL_PER_CLASS=${VAL_PER_CLASS:-200}
source "$(dirname "$0")/lib.sh"
install_requirements
if ! dry && [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && [ ! -e datasets/FashionMNIST/raw ]; then
  echo "installing the Debian package dataset-fashion-mnist (real Fashion-MNIST, no download from elsewhere)"
  SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist
fi
OUT=${1:-raid/main_job}
# --repeat 2 overrides the budget's 1 (a spread in every cell, within 12 minutes on 2 cores: docs/results.md)
EVAL=("${EVAL_BUDGET[@]}" --repeat 2 ${EPOCHS:+--epochs "$EPOCHS"} ${PRECISION:+--precision "$PRECISION"})
COND=(--reproduce -d fashion -f 2 --ipc 4 --eval_during False "${COND_BUDGET[@]}" --device "$DEVICE"
      ${PRECISION:+--precision "$PRECISION"})
start=$(date +%s)
echo "== MDC (adaptive subset loss) =="
run python3 ${P}condense_reg.py "${COND[@]}" --adaptive_reg True --save_dir "$OUT/mdc" --resume
echo "== Baseline C (same run without the adaptive subset loss) =="
run python3 ${P}condense_reg.py "${COND[@]}" --save_dir "$OUT/baseline_c" --resume
for RUN in mdc baseline_c; do
  run rm -f "$OUT/$RUN/test_results.json"
  for Y in 1 2 3 4; do
    echo "== evaluate $RUN IPC-$Y =="
    run python3 ${P}test.py -d fashion -f 2 --ipc 4 --ipcy "$Y" --test_type cx_cy --test_data_dir "$OUT/$RUN" \
      "${EVAL[@]}" --device "$DEVICE" --results_file "$OUT/$RUN/test_results.json"
  done
done
ACCS=(best); [ "$VAL_PER_CLASS" = 0 ] || ACCS+=(val); ACCS+=(last)  # val: needs the held-out images
for ACC in "${ACCS[@]}"; do
  PLOT=(); TABLE=$OUT/table_$ACC.md  # table.md: best-on-test, the papers' accuracy
  [ "$ACC" = best ] && PLOT=(--plot "$OUT/prefix_accuracy.png") && TABLE=$OUT/table.md
  echo "== IPC-x prefixes of one condensed set (Fashion-MNIST, reduced budget above; --accuracy $ACC, %) =="
  run_tee "$TABLE" python3 -m evaluation.report prefix "Baseline C=$OUT/baseline_c/test_results.json" \
    "MDC=$OUT/mdc/test_results.json" --accuracy "$ACC" "${PLOT[@]}"
done
echo "total wall time: $(( $(date +%s) - start )) s"
dry || echo "tables: $OUT/table*.md   plot: $OUT/prefix_accuracy.png   records: $OUT/{mdc,baseline_c}/test_results.json"
