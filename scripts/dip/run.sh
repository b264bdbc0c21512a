#!/bin/bash
# DIP (on CoOp) over the 11 datasets and $SEEDS (default 1 2 3): bash scripts/dip/run.sh base2new|fewshot|xd|dg
# Configs: base-to-new vit_b16_ep20_ctxv1, few-shot vit_b16_ep50/100/200_ctxv1 by shots (CoOp's epochs; ImageNet 50),
# cross-dataset / DG vit_b16_ep20_ctxv1 (override with B2N_CFG / FS_CFG / XD_CFG).
# A job whose output directory holds results.json is skipped; DATA=/path/to/datasets.
source "$(dirname "$0")/../common.sh"
protocol_loops DIP "${B2N_CFG:-vit_b16_ep20_ctxv1}" "${FS_CFG:-vit_b16_ep{ep\}_ctxv1}" "${XD_CFG:-vit_b16_ep20_ctxv1}" "${1:?protocol: base2new, fewshot, xd or dg}"
