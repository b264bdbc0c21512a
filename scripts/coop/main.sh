#!/bin/bash
# CoOp few-shot: bash scripts/coop/main.sh DATASET CFG CTP NCTX SHOTS CSC   (e.g. eurosat vit_b16_ep50 end 16 1 False)
# Output: $OUTPUT/DATASET/CoOp/CFG_SHOTSshots/nctxNCTX_cscCSC_ctpCTP/seed<S> for each of SEEDS.
# Variables (scripts/common.sh): DATA, OUTPUT, SEEDS, DRY_RUN, PYTHON. DATASETS / SHOTS_LIST do not apply (the dataset
# and the shot count are arguments; fewshot_all.sh loops over DATASETS and SHOTS_LIST).
source "$(dirname "$0")/../common.sh"
USAGE="usage: bash scripts/coop/main.sh DATASET CFG CTP NCTX SHOTS CSC"
TRAINER=CoOp
DATASET=${1:?${USAGE}}
CFG=${2:?${USAGE}}    # config file
CTP=${3:?${USAGE}}    # class token position (end / middle / front)
NCTX=${4:?${USAGE}}   # number of context tokens
SHOTS=${5:?${USAGE}}  # number of shots (1, 2, 4, 8, 16)
CSC=${6:?${USAGE}}    # class-specific context (False or True)
for SEED in ${SEEDS}; do
    DIR=${OUTPUT}/${DATASET}/${TRAINER}/${CFG}_${SHOTS}shots/nctx${NCTX}_csc${CSC}_ctp${CTP}/seed${SEED}
    run_job "${DIR}" --seed "${SEED}" --trainer ${TRAINER} \
        --dataset-config-file "configs/datasets/${DATASET}.yaml" \
        --config-file "configs/trainers/${TRAINER}/${CFG}.yaml" \
        TRAINER.COOP.N_CTX "${NCTX}" TRAINER.COOP.CSC "${CSC}" TRAINER.COOP.CLASS_TOKEN_POSITION "${CTP}" \
        DATASET.NUM_SHOTS "${SHOTS}"
done
