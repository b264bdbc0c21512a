#!/bin/bash
# CoCoOp base-to-new over the 11 datasets and $SEEDS (train on base, test on new).
source "$(dirname "$0")/../common.sh"
for DATASET in ${DATASETS:-${ALL_DATASETS}}; do
    for SEED in ${SEEDS}; do
        bash scripts/cocoop/base2new_train.sh "${DATASET}" "${SEED}"
        bash scripts/cocoop/base2new_test.sh "${DATASET}" "${SEED}"
    done
done
