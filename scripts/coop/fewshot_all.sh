#!/bin/bash
# CoOp few-shot over DATASETS (default the 11), K in SHOTS_LIST (default 1 2 4 8 16) and SEEDS (default 1 2 3), with
# the paper's epochs (50 for 1 shot, 100 for 2/4, 200 for 8/16; ImageNet 50 at every K), each job by main.sh:
#   bash scripts/coop/fewshot_all.sh [NCTX] [CSC] [CTP]   (default 16 False end)
# Variables (scripts/common.sh): DATA, OUTPUT, DATASETS, SEEDS, SHOTS_LIST, DRY_RUN, PYTHON.
source "$(dirname "$0")/../common.sh"
NCTX=${1:-16}
CSC=${2:-False}
CTP=${3:-end}
for DATASET in ${DATASETS}; do
    for SHOTS in ${SHOTS_LIST}; do
        case ${SHOTS} in 1) CFG=vit_b16_ep50 ;; 2|4) CFG=vit_b16_ep100 ;; *) CFG=vit_b16 ;; esac
        [ "${DATASET}" = imagenet ] && CFG=vit_b16_ep50
        bash scripts/coop/main.sh "${DATASET}" "${CFG}" "${CTP}" "${NCTX}" "${SHOTS}" "${CSC}"
    done
done
