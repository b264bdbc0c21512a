#!/bin/bash
# Evaluate the ImageNet-trained CoOp (16 shots) on another dataset (cross-dataset / domain generalisation):
# bash scripts/coop/eval.sh DATASET CFG [LOADEP]   (e.g. imagenetv2 vit_b16_ep50 50)
source "$(dirname "$0")/../common.sh"
TRAINER=CoOp
DATASET=$1
CFG=$2
LOADEP=${3:-50}
SHOTS=16
NCTX=16
CSC=False
CTP=end
for SEED in ${SEEDS}; do
    MODEL_DIR=output/imagenet/${TRAINER}/${CFG}_${SHOTS}shots/nctx${NCTX}_csc${CSC}_ctp${CTP}/seed${SEED}
    DIR=output/evaluation/${TRAINER}/${CFG}_${SHOTS}shots/nctx${NCTX}_csc${CSC}_ctp${CTP}/${DATASET}/seed${SEED}
    run_job "${DIR}" --seed "${SEED}" --trainer ${TRAINER} \
        --dataset-config-file configs/datasets/${DATASET}.yaml \
        --config-file configs/trainers/${TRAINER}/${CFG}.yaml \
        --model-dir "${MODEL_DIR}" --load-epoch "${LOADEP}" --eval-only \
        TRAINER.COOP.N_CTX ${NCTX} TRAINER.COOP.CSC ${CSC} TRAINER.COOP.CLASS_TOKEN_POSITION ${CTP}
done
