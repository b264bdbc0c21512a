#!/bin/bash
# Zero-shot CLIP: bash scripts/zsclip/zeroshot.sh DATASET CFG [TRAINER]   (CFG from configs/trainers/CoOp, e.g. vit_b16;
# TRAINER ZeroshotCLIP (hand-crafted template, default) or ZeroshotCLIP2 (ImageNet template ensemble)).
# Set SUBSAMPLE=base or new for the base-to-new columns. Output: $OUTPUT/TRAINER/CFG/DATASET[_SUBSAMPLE].
# Variables (scripts/common.sh): DATA, OUTPUT, DRY_RUN, PYTHON. DATASETS does not apply (the dataset is the argument),
# SEEDS does not (no training: one deterministic evaluation), SHOTS_LIST does not (no shots).
source "$(dirname "$0")/../common.sh"
DATASET=${1:?usage: bash scripts/zsclip/zeroshot.sh DATASET CFG [TRAINER]}
CFG=${2:?usage: bash scripts/zsclip/zeroshot.sh DATASET CFG [TRAINER]}
TRAINER=${3:-ZeroshotCLIP}
SUBSAMPLE=${SUBSAMPLE:-all}
DIR=${OUTPUT}/${TRAINER}/${CFG}/${DATASET}
[ "${SUBSAMPLE}" != all ] && DIR=${DIR}_${SUBSAMPLE}
run_job "${DIR}" --trainer ${TRAINER} \
    --dataset-config-file "configs/datasets/${DATASET}.yaml" \
    --config-file "configs/trainers/CoOp/${CFG}.yaml" \
    --eval-only DATASET.SUBSAMPLE_CLASSES "${SUBSAMPLE}"
