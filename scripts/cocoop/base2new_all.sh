#!/bin/bash
# CoCoOp base-to-new over DATASETS (default the 11) and SEEDS (train on base, test on new):
#   bash scripts/cocoop/base2new_all.sh
# Variables (scripts/common.sh): DATA, OUTPUT, DATASETS, SEEDS, DRY_RUN, PYTHON (and CFG / LOADEP / SUB, passed on to
# base2new_train.sh / base2new_test.sh). SHOTS_LIST does not apply (base-to-new uses 16 shots).
source "$(dirname "$0")/../common.sh"
for DATASET in ${DATASETS}; do
    for SEED in ${SEEDS}; do
        bash scripts/cocoop/base2new_train.sh "${DATASET}" "${SEED}"
        bash scripts/cocoop/base2new_test.sh "${DATASET}" "${SEED}"
    done
done
