#!/bin/bash
# CoCoOp cross-dataset and domain generalisation: train on ImageNet, evaluate on the 10 other datasets and
# the 4 ImageNet variants, for $SEEDS.
source "$(dirname "$0")/../common.sh"
for SEED in ${SEEDS}; do
    bash scripts/cocoop/xd_train.sh "${SEED}"
    for DATASET in ${XD_TARGETS} ${DG_TARGETS}; do
        bash scripts/cocoop/xd_test.sh "${DATASET}" "${SEED}"
    done
done
