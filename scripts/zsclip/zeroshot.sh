#!/bin/bash
# Zero-shot CLIP: bash scripts/zsclip/zeroshot.sh DATASET CFG [TRAINER]   (CFG from configs/trainers/CoOp, e.g. vit_b16;
# TRAINER ZeroshotCLIP (hand-crafted template, default) or ZeroshotCLIP2 (ImageNet template ensemble)).
# Set SUBSAMPLE=base or new for the base-to-new columns.
source "$(dirname "$0")/../common.sh"
DATASET=$1
CFG=$2
TRAINER=${3:-ZeroshotCLIP}
SUBSAMPLE=${SUBSAMPLE:-all}
DIR=output/${TRAINER}/${CFG}/${DATASET}
[ "${SUBSAMPLE}" != all ] && DIR=${DIR}_${SUBSAMPLE}
run_job "${DIR}" --trainer ${TRAINER} \
    --dataset-config-file configs/datasets/${DATASET}.yaml \
    --config-file configs/trainers/CoOp/${CFG}.yaml \
    --eval-only DATASET.SUBSAMPLE_CLASSES "${SUBSAMPLE}"
