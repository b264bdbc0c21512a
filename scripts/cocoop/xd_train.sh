#!/bin/bash
# CoCoOp on all ImageNet classes, 16 shots (source of cross-dataset and domain generalisation): bash scripts/cocoop/xd_train.sh SEED
source "$(dirname "$0")/../common.sh"
TRAINER=CoCoOp
SEED=$1
CFG=${CFG:-vit_b16_c4_ep10_batch1_ctxv1}
SHOTS=16
DIR=output/imagenet/${TRAINER}/${CFG}_${SHOTS}shots/seed${SEED}
run_job "${DIR}" --seed "${SEED}" --trainer ${TRAINER} \
    --dataset-config-file configs/datasets/imagenet.yaml \
    --config-file configs/trainers/${TRAINER}/${CFG}.yaml \
    DATASET.NUM_SHOTS ${SHOTS}
