#!/bin/bash
# ProGrad over the 11 datasets and $SEEDS (default 1 2 3): bash scripts/prograd/run.sh base2new|fewshot|xd|dg
# Configs: base-to-new vit_b16_ep100, few-shot vit_b16_ep50/100/200 by shots (as CoOp; ImageNet 50), cross-dataset /
# DG vit_b16_ep50 (override with B2N_CFG / FS_CFG / XD_CFG).
# A job whose output directory holds results.json is skipped; DATA=/path/to/datasets.
source "$(dirname "$0")/../common.sh"
protocol_loops ProGrad "${B2N_CFG:-vit_b16_ep100}" "${FS_CFG:-vit_b16_ep{ep\}}" "${XD_CFG:-vit_b16_ep50}" "${1:?protocol: base2new, fewshot, xd or dg}"
