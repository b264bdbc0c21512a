#!/bin/bash
# Evaluate the ImageNet-trained CoCoOp on another dataset: bash scripts/cocoop/xd_test.sh DATASET SEED
source "$(dirname "$0")/../common.sh"
TRAINER=CoCoOp
DATASET=$1
SEED=$2
CFG=${CFG:-vit_b16_c4_ep10_batch1_ctxv1}
SHOTS=16
LOADEP=${LOADEP:-10}
MODEL_DIR=output/imagenet/${TRAINER}/${CFG}_${SHOTS}shots/seed${SEED}
DIR=output/evaluation/${TRAINER}/${CFG}_${SHOTS}shots/${DATASET}/seed${SEED}
run_job "${DIR}" --seed "${SEED}" --trainer ${TRAINER} \
    --dataset-config-file configs/datasets/${DATASET}.yaml \
    --config-file configs/trainers/${TRAINER}/${CFG}.yaml \
    --model-dir "${MODEL_DIR}" --load-epoch "${LOADEP}" --eval-only
