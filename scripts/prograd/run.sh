#!/bin/bash
# ProGrad over DATASETS (default the 11) and SEEDS (default 1 2 3): bash scripts/prograd/run.sh base2new|fewshot|xd|dg
# Configs: base-to-new vit_b16_ep100, few-shot vit_b16_ep50/100/200 by shots (as CoOp; ImageNet 50), cross-dataset /
# DG vit_b16_ep50 (override with B2N_CFG / FS_CFG / XD_CFG).
# Variables (scripts/common.sh): DATA, OUTPUT, DATASETS, SEEDS, SHOTS_LIST (fewshot), DRY_RUN, PYTHON, and LOADEP (the
# epoch evaluated; default the config's MAX_EPOCH). xd / dg ignore DATASETS: they train on imagenet and evaluate on
# the protocol's fixed targets. A job whose output directory holds results.json is skipped.
source "$(dirname "$0")/../common.sh"
protocol_loops ProGrad "${B2N_CFG:-vit_b16_ep100}" "${FS_CFG:-vit_b16_ep{ep\}}" "${XD_CFG:-vit_b16_ep50}" "${1:?protocol: base2new, fewshot, xd or dg}"
