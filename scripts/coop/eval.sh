#!/bin/bash
# Evaluate the ImageNet-trained CoOp (16 shots) on another dataset (cross-dataset / domain generalisation), for SEEDS:
#   bash scripts/coop/eval.sh DATASET CFG [LOADEP]   (e.g. imagenetv2 vit_b16_ep50 50)
# Loads $OUTPUT/imagenet/CoOp/CFG_16shots/nctx16_cscFalse_ctpend/seed<S> (as written by main.sh) and writes
# $OUTPUT/evaluation/CoOp/CFG_16shots/nctx16_cscFalse_ctpend/DATASET/seed<S>.
# Variables (scripts/common.sh): DATA, OUTPUT, SEEDS, DRY_RUN, PYTHON. DATASETS does not apply (the target is the
# argument), SHOTS_LIST does not (the source model has 16 shots).
source "$(dirname "$0")/../common.sh"
TRAINER=CoOp
DATASET=${1:?usage: bash scripts/coop/eval.sh DATASET CFG [LOADEP]}
CFG=${2:?usage: bash scripts/coop/eval.sh DATASET CFG [LOADEP]}
LOADEP=${3:-50}
SHOTS=16
NCTX=16
CSC=False
CTP=end
for SEED in ${SEEDS}; do
    MODEL_DIR=${OUTPUT}/imagenet/${TRAINER}/${CFG}_${SHOTS}shots/nctx${NCTX}_csc${CSC}_ctp${CTP}/seed${SEED}
    DIR=${OUTPUT}/evaluation/${TRAINER}/${CFG}_${SHOTS}shots/nctx${NCTX}_csc${CSC}_ctp${CTP}/${DATASET}/seed${SEED}
    run_job "${DIR}" --seed "${SEED}" --trainer ${TRAINER} \
        --dataset-config-file "configs/datasets/${DATASET}.yaml" \
        --config-file "configs/trainers/${TRAINER}/${CFG}.yaml" \
        --model-dir "${MODEL_DIR}" --load-epoch "${LOADEP}" --eval-only \
        TRAINER.COOP.N_CTX ${NCTX} TRAINER.COOP.CSC ${CSC} TRAINER.COOP.CLASS_TOKEN_POSITION ${CTP}
done
