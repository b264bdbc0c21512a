#!/bin/bash
# CoCoOp base-to-new, testing on the new classes: bash scripts/cocoop/base2new_test.sh DATASET SEED
# Loads epoch LOADEP (default 10) of $OUTPUT/base2new/train_base/DATASET/shots_16/CoCoOp/$CFG/seedSEED and writes
# $OUTPUT/base2new/test_$SUB/... (SUB default new; SUB=base for the base column).
# Variables (scripts/common.sh): DATA, OUTPUT, DRY_RUN, PYTHON. DATASETS / SEEDS do not apply (one job: the dataset
# and seed are the arguments; base2new_all.sh loops over DATASETS and SEEDS); SHOTS_LIST does not (16 shots).
source "$(dirname "$0")/../common.sh"
TRAINER=CoCoOp
DATASET=${1:?usage: bash scripts/cocoop/base2new_test.sh DATASET SEED}
SEED=${2:?usage: bash scripts/cocoop/base2new_test.sh DATASET SEED}
CFG=${CFG:-vit_b16_c4_ep10_batch1_ctxv1}
SHOTS=16
LOADEP=${LOADEP:-10}
SUB=${SUB:-new}
MODEL_DIR=${OUTPUT}/base2new/train_base/${DATASET}/shots_${SHOTS}/${TRAINER}/${CFG}/seed${SEED}
DIR=${OUTPUT}/base2new/test_${SUB}/${DATASET}/shots_${SHOTS}/${TRAINER}/${CFG}/seed${SEED}
run_job "${DIR}" --seed "${SEED}" --trainer ${TRAINER} \
    --dataset-config-file "configs/datasets/${DATASET}.yaml" \
    --config-file "configs/trainers/${TRAINER}/${CFG}.yaml" \
    --model-dir "${MODEL_DIR}" --load-epoch "${LOADEP}" --eval-only \
    DATASET.NUM_SHOTS ${SHOTS} DATASET.SUBSAMPLE_CLASSES "${SUB}"
