#!/bin/bash
# PromptSRC over DATASETS (default the 11) and SEEDS (default 1 2 3): bash scripts/promptsrc/run.sh base2new|fewshot|xd|dg
# Configs: base-to-new vit_b16_c2_ep20_batch4_4+4ctx, few-shot vit_b16_c2_ep50_batch4_4+4ctx_few_shot, cross-dataset / DG vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets (override with B2N_CFG / FS_CFG / XD_CFG).
# Variables (scripts/common.sh): DATA, OUTPUT, DATASETS, SEEDS, SHOTS_LIST (fewshot), DRY_RUN, PYTHON, and LOADEP (the
# epoch evaluated; default the config's MAX_EPOCH). xd / dg ignore DATASETS: they train on imagenet and evaluate on
# the protocol's fixed targets. A job whose output directory holds results.json is skipped.
source "$(dirname "$0")/../common.sh"
protocol_loops PromptSRC "${B2N_CFG:-vit_b16_c2_ep20_batch4_4+4ctx}" "${FS_CFG:-vit_b16_c2_ep50_batch4_4+4ctx_few_shot}" "${XD_CFG:-vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets}" "${1:?protocol: base2new, fewshot, xd or dg}"
