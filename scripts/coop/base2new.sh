#!/bin/bash
# CoOp base-to-new: train on the base half (16 shots), test on the new half, for DATASETS (default the 11) and SEEDS.
#   bash scripts/coop/base2new.sh [CFG] [LOADEP]   (default vit_b16_ep50_ctxv1 / 50)
# Output: $OUTPUT/base2new/{train_base,test_new}/<dataset>/shots_16/CoOp/CFG/seed<S>.
# Variables (scripts/common.sh): DATA, OUTPUT, DATASETS, SEEDS, DRY_RUN, PYTHON. SHOTS_LIST does not apply (16 shots).
source "$(dirname "$0")/../common.sh"
TRAINER=CoOp
CFG=${1:-vit_b16_ep50_ctxv1}
LOADEP=${2:-50}
SHOTS=16
for DATASET in ${DATASETS}; do
    for SEED in ${SEEDS}; do
        TRAIN_DIR=${OUTPUT}/base2new/train_base/${DATASET}/shots_${SHOTS}/${TRAINER}/${CFG}/seed${SEED}
        TEST_DIR=${OUTPUT}/base2new/test_new/${DATASET}/shots_${SHOTS}/${TRAINER}/${CFG}/seed${SEED}
        COMMON=(--seed "${SEED}" --trainer ${TRAINER} --dataset-config-file "configs/datasets/${DATASET}.yaml"
                --config-file "configs/trainers/${TRAINER}/${CFG}.yaml")
        run_job "${TRAIN_DIR}" "${COMMON[@]}" DATASET.NUM_SHOTS ${SHOTS} DATASET.SUBSAMPLE_CLASSES base
        run_job "${TEST_DIR}" "${COMMON[@]}" --model-dir "${TRAIN_DIR}" --load-epoch "${LOADEP}" --eval-only \
            DATASET.NUM_SHOTS ${SHOTS} DATASET.SUBSAMPLE_CLASSES new
    done
done
