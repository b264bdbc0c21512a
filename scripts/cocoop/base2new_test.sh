#!/bin/bash
# CoCoOp base-to-new, testing on the new classes: bash scripts/cocoop/base2new_test.sh DATASET SEED
source "$(dirname "$0")/../common.sh"
TRAINER=CoCoOp
DATASET=$1
SEED=$2
CFG=${CFG:-vit_b16_c4_ep10_batch1_ctxv1}
SHOTS=16
LOADEP=${LOADEP:-10}
SUB=${SUB:-new}
MODEL_DIR=output/base2new/train_base/${DATASET}/shots_${SHOTS}/${TRAINER}/${CFG}/seed${SEED}
DIR=output/base2new/test_${SUB}/${DATASET}/shots_${SHOTS}/${TRAINER}/${CFG}/seed${SEED}
run_job "${DIR}" --seed "${SEED}" --trainer ${TRAINER} \
    --dataset-config-file configs/datasets/${DATASET}.yaml \
    --config-file configs/trainers/${TRAINER}/${CFG}.yaml \
    --model-dir "${MODEL_DIR}" --load-epoch "${LOADEP}" --eval-only \
    DATASET.NUM_SHOTS ${SHOTS} DATASET.SUBSAMPLE_CLASSES "${SUB}"
