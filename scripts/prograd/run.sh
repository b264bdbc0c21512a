#!/bin/bash
# ProGrad over the 11 datasets and $SEEDS (default 1 2 3): bash scripts/prograd/run.sh base2new|fewshot|xd|dg
# Configs: base-to-new vit_b16_ep100, few-shot vit_b16_ep50/100/200 by shots (as CoOp), cross-dataset / DG vit_b16_ep50 (override with B2N_CFG / FS_CFG / XD_CFG).
# A job whose output directory holds results.json is skipped; DATA=/path/to/datasets.
source "$(dirname "$0")/../common.sh"
if [ "${1:-}" = fewshot ] && [ -z "${FS_CFG:-}" ]; then  # CoOp's epochs per shot count: 50 / 100 / 200, ImageNet 50
    for DATASET in ${DATASETS:-${ALL_DATASETS}}; do for SHOTS in ${SHOTS_LIST:-1 2 4 8 16}; do
        case ${SHOTS} in 1) CFG=vit_b16_ep50 ;; 2|4) CFG=vit_b16_ep100 ;; *) CFG=vit_b16_ep200 ;; esac
        [ "${DATASET}" = imagenet ] && CFG=vit_b16_ep50
        for SEED in ${SEEDS}; do fewshot_train ProGrad "${CFG}" "${DATASET}" "${SEED}" "${SHOTS}"; done
    done; done
    exit 0
fi
protocol_loops ProGrad "${B2N_CFG:-vit_b16_ep100}" "${FS_CFG:-vit_b16_ep200}" "${XD_CFG:-vit_b16_ep50}" "${1:?protocol: base2new, fewshot, xd or dg}"
