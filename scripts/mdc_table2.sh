#!/usr/bin/env bash
# MDC Table 2: the subset degradation of other condensation methods: every prefix IPC-1 … IPC-N of each
# method's IPC-N set (default CIFAR-10, N = 10), ConvNet-3, rows in the paper's order:
#   DC, DSA, MTT  sets condensed by those methods' own code (not part of this project), read from the folder
#                 given on the command line, evaluated as test.py -s dc|dsa|mtt reads them (f = 1;
#                 pre-normalised; the reference's -s settings of each, see python test.py -h):
#                   EXTERNAL_DIR/dc/   data.pt: DC's result dict (its res_*.pt); 'data' lists the experiments,
#                                      each [images, labels]; experiment 3 (the fourth) is evaluated, as
#                                      the reference's test.py
#                   EXTERNAL_DIR/dsa/  data.pt: DSA's result dict, the same layout
#                   EXTERNAL_DIR/mtt/  images_best.pt and labels_best.pt (MTT's saved tensors)
#                 A missing folder is an error naming it, before any work (also under DRY_RUN);
#                 EXTERNAL_METHODS="dsa mtt" leaves DC out (default "dc dsa mtt").
#   IDC           Baseline C (IDC with f = 2): Table 1's C run, reused
#   DREAM         IDC + DREAM's k-means initialisation and real batches (-s dream): shared with Table 8
#   MDC           Table 1's MDC run, reused
# Usage: bash scripts/mdc_table2.sh EXTERNAL_DIR [dataset=cifar10] [N=10] [EXTRA condensation flags]
#        DRY_RUN=1 prints the commands and runs nothing; BUDGET=paper|cpu|smoke (scripts/lib.sh);
#        DEVICE=auto|cpu|cuda; OUT=<folder> (default raid/mdc_table2/<dataset>); RUNS=<folder> holds the
#        runs shared with other tables, C, MDC and DREAM (default Table 1's raid/mdc_table1/<dataset>);
#        runs resume (--resume).
# Work at the paper budget, N = 10: 3 condensations of 2000 outer iterations x 100 inner steps (IDC, DREAM,
# MDC; none if Tables 1 and 8 have run) and 6N = 60 evaluations x 3 repeats x 1000 epochs (the DC, DSA
# and MTT condensations are not counted: their authors' code). GPU hours: not measured (no GPU has been
# lent to this project); the report lands in $OUT/report/mdc2.{md,csv,png}.
# Declarations (checked by the pre-check before anything starts, sweep/precheck.py):
#: arg EXTERNAL_DIR text     the folder of the DC, DSA and MTT sets
#: arg DATASET flag:-d       the dataset (imagenet: ImageNet-10); its values are condense_reg.py's -d
#: arg N int>=2              the IPC to condense to (MDC's subsets are IPC-1 … IPC-(N-1))
#: rest condense_reg.py      EXTRA condensation flags, appended to every condensation
#: env OUT text              the table's folder
#: env RUNS text             the folder of the runs shared between tables
#: env EXTERNAL_METHODS words:dc|dsa|mtt  the external methods evaluated (empty: none)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
if [ $# -lt 1 ] || [ -z "$1" ]; then
  echo "usage: bash scripts/mdc_table2.sh EXTERNAL_DIR [dataset=cifar10] [N=10] [EXTRA condensation flags]" \
       "(EXTERNAL_DIR holds the DC, DSA and MTT sets: dc/, dsa/, mtt/; see the script's header)" >&2
  exit 2
fi
EXT=$1; DATASET=${2:-cifar10}; N=${3:-10}; shift $(( $# > 3 ? 3 : $# )) || true
OUT=${OUT:-raid/mdc_table2/$DATASET}
mdc_setup "$DATASET" "$N" "$@"
METHODS=${EXTERNAL_METHODS-dc dsa mtt}
for M in $METHODS; do
  case $M in dc|dsa|mtt) ;; *) echo "error: EXTERNAL_METHODS: $M is not one of dc, dsa, mtt" >&2; exit 2 ;; esac
  if [ ! -d "$EXT/$M" ]; then
    echo "error: MDC Table 2 needs the ${M^^} set of $DATASET at IPC $N in the folder $EXT/$M, which does not" \
         "exist (see the header of scripts/mdc_table2.sh for its files; EXTERNAL_METHODS leaves a method out)" >&2
    exit 2
  fi
done
install_requirements

mdc_condense_c
mdc_condense_dream
mdc_condense_mdc

REPORT=()
for M in $METHODS; do
  mdc_prefixes "${M^^}" "$EXT/$M" "$OUT/${M^^}.json" -s "$M" -f 1
  REPORT+=("$OUT/${M^^}.json")
done
mdc_prefixes IDC "$RUNS/C" "$OUT/IDC.json"
mdc_prefixes DREAM "$RUNS/DREAM" "$OUT/DREAM.json"
mdc_prefixes MDC "$RUNS/MDC" "$OUT/MDC.json"
run python3 -m evaluation.report mdc2 "${REPORT[@]}" "$OUT/IDC.json" "$OUT/DREAM.json" "$OUT/MDC.json" --out "$OUT/report"
