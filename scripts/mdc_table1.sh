#!/usr/bin/env bash
# MDC Table 1 (docs/algorithms.md#baselines-a-b-c-and-mdc): Baselines A, B, C and MDC evaluated at every IPC-y = 1 … N,
# then the table in the paper's layout (rows A/B/C/MDC, columns IPC-1 … IPC-N and Avg.) and the accuracy-vs-IPC plot.
#   A    a separate condensation per IPC k (A at IPC N is the Baseline C run: not run twice)
#   B    N IPC-1 condensations from real-image blocks 0 … N-1 (block 0 is Baseline A at IPC 1: reused)
#   C    one IPC-N condensation, its prefixes evaluated; MDC: the same with --adaptive_reg True
# The paper's rows: CIFAR-10, CIFAR-100 and SVHN (ConvNet-3, f = 2) and ImageNet-10 (`imagenet`: -d imagenet
# --nclass 10, f = 3, ResNetAP-10 and the ImageNet evaluation protocol, all from --reproduce), N = 10.
# Usage: bash scripts/mdc_table1.sh [cifar10|cifar100|svhn|imagenet|fashion] [N=10] [EXTRA condensation flags]
#        DRY_RUN=1 prints the commands and runs nothing; BUDGET=paper|cpu|smoke (scripts/lib.sh);
#        DEVICE=auto|cpu|cuda; OUT=<folder> (default raid/mdc_table1/<dataset>; the condensations live
#        there too, and Tables 2-6, 8 and 11 reuse them); runs resume (--resume). ImageNet is read from
#        datasets/imagenet/{train,val} (ImageFolder); SVHN from datasets/svhn.
# Work at the paper budget, N = 10: 2N = 20 condensations (IPC 1 … 10) of 2000 outer iterations x 100 inner
# steps (ImageNet-10: 500 x 100, each fresh network first trained 10 epochs on real data) and 4N = 40
# evaluations x 3 repeats x 1000 epochs (ImageNet-10: 2000 / 1500 / 1000 epochs by the decoded count of
# IPC-y, reference he-y/Multisize-Dataset-Condensation/argument.py, ipc_epoch; docs/algorithms.md#derived-settings). GPU
# hours: not measured (no GPU has been lent to this project); the report lands in $OUT/report/mdc1.{md,csv,png}.
# Declarations (checked by the pre-check before anything starts, sweep/precheck.py):
#: arg DATASET flag:-d       the dataset (imagenet: ImageNet-10); its values are condense_reg.py's -d
#: arg N int>=2              the IPC to condense to (MDC's subsets are IPC-1 … IPC-(N-1))
#: rest condense_reg.py      EXTRA condensation flags, appended to every condensation
#: env OUT text              the table's folder
set -euo pipefail
source "$(dirname "$0")/lib.sh"
DATASET=${1:-cifar10}; N=${2:-10}; shift $(( $# > 2 ? 2 : $# )) || true
OUT=${OUT:-raid/mdc_table1/$DATASET}
RUNS=$OUT
mdc_setup "$DATASET" "$N" "$@"
install_requirements

mdc_abc_condense
mdc_abc_eval "$OUT"
run python3 -m evaluation.report mdc1 "$OUT/A.json" "$OUT/B.json" "$OUT/C.json" "$OUT/MDC.json" --out "$OUT/report"
