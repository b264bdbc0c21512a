#!/bin/bash
# DPC over DATASETS (default the 11) and SEEDS (default 1 2 3), both stages: [BASE=CoOp|MaPLe|PromptSRC] bash scripts/dpc/run.sh base2new|xd|dg
# For each dataset x seed (base2new: 16 shots of the base classes of each of DATASETS; xd / dg: imagenet, all classes,
# 16 shots, for each of SEEDS): (1) train the backbone BASE, (2) evaluate it on the new classes (base2new) or on each
# target (xd: the 10 cross-dataset targets, dg: the 4 ImageNet variants), (3) train DPC on top of it (same dataset,
# classes, shots and seed; TRAINER.DPC.BACKBONE_DIR is the backbone's training folder, TRAINER.DPC.BACKBONE_EPOCH
# the config's -1: its last checkpoint), (4) evaluate DPC the same way (--model-dir the DPC training folder, which
# holds the backbone prompts too). On classes other than the trained ones DPC evaluates with the backbone's prompts,
# so its new-class / xd / dg numbers should equal the backbone's (running both is the check).
# BASE=CoOp (default): backbone CoOp vit_b16_ep20_lr35, DPC coop_vit_b16_ep20_bs4_top8.
# BASE=MaPLe: backbone MaPLe vit_b16_c2_ep20_batch32_2ctx, DPC maple_vit_b16_c2_ep20_bs4_top8.
# BASE=PromptSRC: backbone PromptSRC vit_b16_c2_ep20_batch32_4+4ctx, DPC promptsrc_vit_b16_c2_ep20_bs4_top8.
# Override with BACKBONE_CFG (configs/trainers/BASE/) / DPC_CFG (configs/trainers/DPC/; its TRAINER.DPC.BASE and its
# TRAINER.<BASE> keys must match the backbone's). Output: the backbone's in its trainer's folders, DPC's under
# .../DPC/<DPC_CFG>/..., e.g. $OUTPUT/base2new/{train_base,test_new}/<dataset>/shots_16/{BASE/BACKBONE_CFG,DPC/DPC_CFG}/seed<S>,
# $OUTPUT/imagenet/{BASE/BACKBONE_CFG,DPC/DPC_CFG}_16shots/seed<S> and $OUTPUT/evaluation/.../<target>/seed<S>.
# Variables (scripts/common.sh): DATA, OUTPUT, DATASETS, SEEDS, DRY_RUN, PYTHON, and LOADEP (the epoch evaluated, of
# both stages; default each config's MAX_EPOCH). xd / dg ignore DATASETS: they train on imagenet and evaluate on the
# protocol's fixed targets. SHOTS_LIST does not apply (16 shots; few-shot is not a DPC protocol: "fewshot" is
# refused). A job whose output directory holds results.json is skipped, so a finished backbone is not retrained.
source "$(dirname "$0")/../common.sh"
PROTOCOL=${1:-}
case "${PROTOCOL}" in
    base2new|xd|dg) ;;
    fewshot) echo "${SCRIPT}: fewshot is not a DPC protocol (the DPC paper reports base2new, xd and dg only): use base2new, xd or dg" >&2; exit 2 ;;
    *) echo "${SCRIPT}: ${PROTOCOL:+unknown protocol '${PROTOCOL}'}${PROTOCOL:-no protocol}: usage [BASE=CoOp|MaPLe|PromptSRC] bash ${SCRIPT} base2new|xd|dg" >&2; exit 2 ;;
esac
BASE=${BASE:-CoOp}
case "${BASE}" in
    CoOp) BB=vit_b16_ep20_lr35; DPC=coop_vit_b16_ep20_bs4_top8 ;;
    MaPLe) BB=vit_b16_c2_ep20_batch32_2ctx; DPC=maple_vit_b16_c2_ep20_bs4_top8 ;;
    PromptSRC) BB=vit_b16_c2_ep20_batch32_4+4ctx; DPC=promptsrc_vit_b16_c2_ep20_bs4_top8 ;;
    *) echo "${SCRIPT}: BASE must be CoOp, MaPLe or PromptSRC, got '${BASE}'" >&2; exit 2 ;;
esac
BB=${BACKBONE_CFG:-${BB}}
DPC=${DPC_CFG:-${DPC}}
for _config in "configs/trainers/${BASE}/${BB}.yaml" "configs/trainers/DPC/${DPC}.yaml"; do
    [ -f "${_config}" ] || { echo "${SCRIPT}: no config ${_config} (BASE ${BASE}, BACKBONE_CFG / DPC_CFG)" >&2; exit 2; }
done
# the DPC config names its base (TRAINER.DPC.BASE, the trainer's default CoOp): it must be BASE
DPC_BASE=$("${PYTHON}" -c "import sys, yaml; print(((yaml.safe_load(open(sys.argv[1])).get('TRAINER') or {}).get('DPC') or {}).get('BASE', 'CoOp'))" "configs/trainers/DPC/${DPC}.yaml")
if [ "${DPC_BASE}" != "${BASE}" ]; then
    echo "${SCRIPT}: configs/trainers/DPC/${DPC}.yaml is DPC on ${DPC_BASE} (TRAINER.DPC.BASE), but BASE is ${BASE}: set BASE=${DPC_BASE} or another DPC_CFG" >&2
    exit 2
fi
# the evaluated epochs, read once (as protocol_loops does)
BB_EP=${LOADEP:-$(max_epoch "configs/trainers/${BASE}/${BB}.yaml")}
DPC_EP=${LOADEP:-$(max_epoch "configs/trainers/DPC/${DPC}.yaml")}

if [ "${PROTOCOL}" = base2new ]; then
    for DATASET in ${DATASETS}; do
        for SEED in ${SEEDS}; do
            # b2n_train's output folder (common.sh's scheme)
            BACKBONE_DIR=${OUTPUT}/base2new/train_base/${DATASET}/shots_16/${BASE}/${BB}/seed${SEED}
            b2n_train "${BASE}" "${BB}" "${DATASET}" "${SEED}"
            LOADEP=${BB_EP} b2n_test "${BASE}" "${BB}" "${DATASET}" "${SEED}"
            b2n_train DPC "${DPC}" "${DATASET}" "${SEED}" TRAINER.DPC.BACKBONE_DIR "${BACKBONE_DIR}"
            LOADEP=${DPC_EP} b2n_test DPC "${DPC}" "${DATASET}" "${SEED}"
        done
    done
else
    TARGETS=${XD_TARGETS}
    [ "${PROTOCOL}" = dg ] && TARGETS=${DG_TARGETS}
    for SEED in ${SEEDS}; do
        # fewshot_train's output folder for imagenet, 16 shots (the model-dir of xd_test)
        BACKBONE_DIR=${OUTPUT}/imagenet/${BASE}/${BB}_16shots/seed${SEED}
        fewshot_train "${BASE}" "${BB}" imagenet "${SEED}" 16
        for TARGET in ${TARGETS}; do LOADEP=${BB_EP} xd_test "${BASE}" "${BB}" "${TARGET}" "${SEED}"; done
        fewshot_train DPC "${DPC}" imagenet "${SEED}" 16 TRAINER.DPC.BACKBONE_DIR "${BACKBONE_DIR}"
        for TARGET in ${TARGETS}; do LOADEP=${DPC_EP} xd_test DPC "${DPC}" "${TARGET}" "${SEED}"; done
    done
fi
