#!/bin/bash
# CoOp few-shot over the 11 datasets, K = 1 2 4 8 16, seeds 1-3, with the paper's epochs
# (50 for 1 shot, 100 for 2/4, 200 for 8/16; ImageNet 50 at every K). Usage: bash scripts/coop/fewshot_all.sh [NCTX] [CSC] [CTP]
source "$(dirname "$0")/../common.sh"
NCTX=${1:-16}
CSC=${2:-False}
CTP=${3:-end}
for DATASET in ${ALL_DATASETS}; do
    for SHOTS in 1 2 4 8 16; do
        case ${SHOTS} in 1) CFG=vit_b16_ep50 ;; 2|4) CFG=vit_b16_ep100 ;; *) CFG=vit_b16 ;; esac
        [ "${DATASET}" = imagenet ] && CFG=vit_b16_ep50
        bash scripts/coop/main.sh "${DATASET}" "${CFG}" "${CTP}" "${NCTX}" "${SHOTS}" "${CSC}"
    done
done
