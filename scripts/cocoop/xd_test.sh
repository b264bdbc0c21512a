#!/bin/bash
# Evaluate the ImageNet-trained CoCoOp on another dataset: bash scripts/cocoop/xd_test.sh DATASET SEED
# Loads epoch LOADEP (default 10) of $OUTPUT/imagenet/CoCoOp/${CFG}_16shots/seedSEED and writes
# $OUTPUT/evaluation/CoCoOp/${CFG}_16shots/DATASET/seedSEED (CFG default vit_b16_c4_ep10_batch1_ctxv1).
# Variables (scripts/common.sh): DATA, OUTPUT, DRY_RUN, PYTHON. DATASETS / SEEDS do not apply (one job: the target
# and seed are the arguments; xd_all.sh loops), SHOTS_LIST does not (the source model has 16 shots).
source "$(dirname "$0")/../common.sh"
TRAINER=CoCoOp
DATASET=${1:?usage: bash scripts/cocoop/xd_test.sh DATASET SEED}
SEED=${2:?usage: bash scripts/cocoop/xd_test.sh DATASET SEED}
CFG=${CFG:-vit_b16_c4_ep10_batch1_ctxv1}
SHOTS=16
LOADEP=${LOADEP:-10}
MODEL_DIR=${OUTPUT}/imagenet/${TRAINER}/${CFG}_${SHOTS}shots/seed${SEED}
DIR=${OUTPUT}/evaluation/${TRAINER}/${CFG}_${SHOTS}shots/${DATASET}/seed${SEED}
run_job "${DIR}" --seed "${SEED}" --trainer ${TRAINER} \
    --dataset-config-file "configs/datasets/${DATASET}.yaml" \
    --config-file "configs/trainers/${TRAINER}/${CFG}.yaml" \
    --model-dir "${MODEL_DIR}" --load-epoch "${LOADEP}" --eval-only
