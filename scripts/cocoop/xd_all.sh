#!/bin/bash
# CoCoOp cross-dataset and domain generalisation: train on ImageNet, evaluate on the 10 other datasets and the 4
# ImageNet variants, for each of SEEDS:  bash scripts/cocoop/xd_all.sh
# Variables (scripts/common.sh): DATA, OUTPUT, SEEDS, DRY_RUN, PYTHON (and CFG / LOADEP, passed on to xd_train.sh /
# xd_test.sh). DATASETS does not apply (the protocol fixes the source, imagenet, and the targets, XD_TARGETS and
# DG_TARGETS); SHOTS_LIST does not (16 shots).
source "$(dirname "$0")/../common.sh"
for SEED in ${SEEDS}; do
    bash scripts/cocoop/xd_train.sh "${SEED}"
    for DATASET in ${XD_TARGETS} ${DG_TARGETS}; do
        bash scripts/cocoop/xd_test.sh "${DATASET}" "${SEED}"
    done
done
