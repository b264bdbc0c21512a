#!/bin/bash
# DsRA over DATASETS (default the 11) and SEEDS (default 1 2 3): [BASE=KgCoOp|ProGrad] bash scripts/dsra/run.sh base2new|fewshot|xd|dg
# BASE=PromptSRC (default): base-to-new vit_b16_c2_ep20_batch4_4+4ctx, few-shot vit_b16_c2_ep50_batch4_4+4ctx_few_shot,
#   cross-dataset / DG vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets.
# BASE=KgCoOp / ProGrad (the paper's Table 5 plug-ins; those methods' recipes): kgcoop_vit_b16_ep100_ctxv1 for every
#   protocol; prograd_vit_b16_ep100 (base-to-new), prograd_vit_b16_ep50/100/200 by shots, prograd_vit_b16_ep50 (xd / dg).
# Override with B2N_CFG / FS_CFG / XD_CFG.
# Variables (scripts/common.sh): DATA, OUTPUT, DATASETS, SEEDS, SHOTS_LIST (fewshot), DRY_RUN, PYTHON, and LOADEP (the
# epoch evaluated; default the config's MAX_EPOCH). xd / dg ignore DATASETS: they train on imagenet and evaluate on
# the protocol's fixed targets. A job whose output directory holds results.json is skipped.
source "$(dirname "$0")/../common.sh"
PROTOCOL=${1:?protocol: base2new, fewshot, xd or dg}
case "${BASE:-PromptSRC}" in
    PromptSRC) B2N=vit_b16_c2_ep20_batch4_4+4ctx; FS=vit_b16_c2_ep50_batch4_4+4ctx_few_shot
               XD=vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets ;;
    KgCoOp) B2N=kgcoop_vit_b16_ep100_ctxv1; FS=${B2N}; XD=${B2N} ;;
    ProGrad) B2N=prograd_vit_b16_ep100; FS=prograd_vit_b16_ep{ep}; XD=prograd_vit_b16_ep50 ;;
    *) echo "BASE must be PromptSRC, KgCoOp or ProGrad, got ${BASE}" >&2; exit 2 ;;
esac
protocol_loops DsRA "${B2N_CFG:-${B2N}}" "${FS_CFG:-${FS}}" "${XD_CFG:-${XD}}" "${PROTOCOL}"
