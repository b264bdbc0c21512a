#!/bin/bash
# CoCoOp on all ImageNet classes, 16 shots (source of cross-dataset and domain generalisation):
#   bash scripts/cocoop/xd_train.sh SEED
# Output: $OUTPUT/imagenet/CoCoOp/${CFG}_16shots/seedSEED (CFG default vit_b16_c4_ep10_batch1_ctxv1).
# Variables (scripts/common.sh): DATA, OUTPUT, DRY_RUN, PYTHON. DATASETS does not apply (the source is imagenet),
# SEEDS does not (one job: the seed is the argument; xd_all.sh loops over SEEDS), SHOTS_LIST does not (16 shots).
source "$(dirname "$0")/../common.sh"
TRAINER=CoCoOp
SEED=${1:?usage: bash scripts/cocoop/xd_train.sh SEED}
CFG=${CFG:-vit_b16_c4_ep10_batch1_ctxv1}
SHOTS=16
DIR=${OUTPUT}/imagenet/${TRAINER}/${CFG}_${SHOTS}shots/seed${SEED}
run_job "${DIR}" --seed "${SEED}" --trainer ${TRAINER} \
    --dataset-config-file configs/datasets/imagenet.yaml \
    --config-file "configs/trainers/${TRAINER}/${CFG}.yaml" \
    DATASET.NUM_SHOTS ${SHOTS}
