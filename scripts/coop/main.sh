#!/bin/bash
# CoOp few-shot: bash scripts/coop/main.sh DATASET CFG CTP NCTX SHOTS CSC   (e.g. eurosat vit_b16_ep50 end 16 1 False)
# Seeds from $SEEDS (default 1 2 3); data root from $DATA.
source "$(dirname "$0")/../common.sh"
TRAINER=CoOp
DATASET=$1
CFG=$2      # config file
CTP=$3      # class token position (end / middle / front)
NCTX=$4     # number of context tokens
SHOTS=$5    # number of shots (1, 2, 4, 8, 16)
CSC=$6      # class-specific context (False or True)
for SEED in ${SEEDS}; do
    DIR=output/${DATASET}/${TRAINER}/${CFG}_${SHOTS}shots/nctx${NCTX}_csc${CSC}_ctp${CTP}/seed${SEED}
    run_job "${DIR}" --seed "${SEED}" --trainer ${TRAINER} \
        --dataset-config-file configs/datasets/${DATASET}.yaml \
        --config-file configs/trainers/${TRAINER}/${CFG}.yaml \
        TRAINER.COOP.N_CTX "${NCTX}" TRAINER.COOP.CSC "${CSC}" TRAINER.COOP.CLASS_TOKEN_POSITION "${CTP}" \
        DATASET.NUM_SHOTS "${SHOTS}"
done
