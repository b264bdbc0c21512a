#!/bin/bash
# CoCoOp base-to-new, training on the base classes: bash scripts/cocoop/base2new_train.sh DATASET SEED
source "$(dirname "$0")/../common.sh"
TRAINER=CoCoOp
DATASET=$1
SEED=$2
CFG=${CFG:-vit_b16_c4_ep10_batch1_ctxv1}
SHOTS=16
DIR=output/base2new/train_base/${DATASET}/shots_${SHOTS}/${TRAINER}/${CFG}/seed${SEED}
run_job "${DIR}" --seed "${SEED}" --trainer ${TRAINER} \
    --dataset-config-file configs/datasets/${DATASET}.yaml \
    --config-file configs/trainers/${TRAINER}/${CFG}.yaml \
    DATASET.NUM_SHOTS ${SHOTS} DATASET.SUBSAMPLE_CLASSES base
