#!/bin/bash
# DPD-LoRA over DATASETS (default the 11) and SEEDS (default 1 2 3): [ROW=...] [TEACHER_DIR=...] bash scripts/dpdlora/run.sh base2new|fewshot|xd|dg|ablation
# Configs (configs/trainers/DPDLoRA/): base-to-new (and ablation) vit_b16_c2_ep20_batch4_2ctx, few-shot
# vit_b16_c2_ep50_batch4_2ctx_few_shot, cross-dataset / DG vit_b16_c2_ep2_batch4_2ctx_cross_datasets (override with
# B2N_CFG / FS_CFG / XD_CFG). base2new, fewshot, xd and dg are MaPLe's protocols (scripts/maple/run.sh) with these
# configs, in common.sh's output scheme. Each training job is one train.py run holding both stages of DPD-LoRA: the
# stage-1 teacher (saved in <run>/teacher/), then the student; the cross-dataset recipe trains no teacher (KL weight 0).
# ablation: the paper's Table 3 rows, each the base2new protocol with B2N_CFG plus TRAINER.DPDLORA switches (passed to
# its training and its evaluation), in a folder of its own,
#   $OUTPUT/base2new/{train_base,test_new}/<dataset>/shots_16/DPDLoRA_ablation_<row>/<B2N_CFG>/seed<S>:
#     lorss        MaPLe + LoRSS: INTERACTION False GATE False KL_WEIGHT 0.0 ORTH_WEIGHT 0.0 TEXT_LOSS_WEIGHT 0.0
#     interaction  + hierarchical prompts and LoRSS: GATE False KL_WEIGHT 0.0 ORTH_WEIGHT 0.0 TEXT_LOSS_WEIGHT 0.0
#     scl          + the stage-1 teacher's KL, L_orth and L_text: GATE False
#     pcgm         + the prompt-conditioned gates: the full model (no switch)
#   ROW=<row> (or several, space-separated) runs only those rows; default all four, in this order.
# TEACHER_DIR (base2new, fewshot, and the ablation rows that train a teacher: scl, pcgm): each training job reads its
#   stage-1 teacher (TRAINER.DPDLORA.TEACHER_DIR) from the training folder of the same dataset, seed, shots and
#   classes of an earlier run of this script whose OUTPUT was TEACHER_DIR and whose config was TEACHER_CFG (default
#   B2N_CFG for base2new / ablation, FS_CFG for fewshot):
#     base2new, ablation: $TEACHER_DIR/base2new/train_base/<dataset>/shots_16/DPDLoRA/<TEACHER_CFG>/seed<S>
#     fewshot:            $TEACHER_DIR/<dataset>/DPDLoRA/<TEACHER_CFG>_<K>shots/seed<S>
#   so that runs of other stage-2 settings (another B2N_CFG / FS_CFG, another OUTPUT, the ablation rows) reuse one
#   teacher instead of training it again, e.g. after a base2new run into OUTPUT=output:
#     TEACHER_DIR=output ROW=scl bash scripts/dpdlora/run.sh ablation
#   That run's stage 1 must have finished (teacher/model.pth.tar-<EARLY_STOP>) with the same LoRSS keys and stage-1
#   training (train.py checks it). The evaluation jobs do not get it (they need the student only), nor xd / dg (no teacher), nor
#   the lorss / interaction rows (KL weight 0: no teacher). A folder's name does not say whether its teacher was read,
#   so use another OUTPUT (or config) when switching TEACHER_DIR on or off. TEACHER_DIR = OUTPUT with TEACHER_CFG the
#   protocol's own config would name each job's own folder and is refused.
# Variables (scripts/common.sh): DATA, OUTPUT, DATASETS, SEEDS, SHOTS_LIST (fewshot), DRY_RUN, PYTHON, and LOADEP (the
# epoch evaluated; default the config's MAX_EPOCH: 20 base-to-new, 2 cross-dataset). A relative TEACHER_DIR is relative
# to the repository root, like OUTPUT. xd / dg ignore DATASETS: they train on imagenet and evaluate on the protocol's
# fixed targets. No train.py options are forwarded: arguments after the protocol are refused, as are an unknown
# protocol or row and a missing config (exit 2). A job whose output directory holds results.json is skipped.
source "$(dirname "$0")/../common.sh"
PROTOCOL=${1:-}
USAGE="usage [ROW=lorss|interaction|scl|pcgm] [TEACHER_DIR=DIR] bash ${SCRIPT} base2new|fewshot|xd|dg|ablation"
case "${PROTOCOL}" in
    base2new|fewshot|xd|dg|ablation) ;;
    *) echo "${SCRIPT}: ${PROTOCOL:+unknown protocol '${PROTOCOL}'}${PROTOCOL:-no protocol}: ${USAGE}" >&2; exit 2 ;;
esac
if [ $# -gt 1 ]; then
    shift
    echo "${SCRIPT}: unexpected arguments after the protocol ($*): no train.py options are forwarded; change settings with B2N_CFG / FS_CFG / XD_CFG (a config file) or ROW; ${USAGE}" >&2
    exit 2
fi
B2N=${B2N_CFG:-vit_b16_c2_ep20_batch4_2ctx}
FS=${FS_CFG:-vit_b16_c2_ep50_batch4_2ctx_few_shot}
XD=${XD_CFG:-vit_b16_c2_ep2_batch4_2ctx_cross_datasets}
case "${PROTOCOL}" in
    base2new|ablation) CFG=${B2N} ;;
    fewshot) CFG=${FS} ;;
    *) CFG=${XD} ;;
esac
[ -f "configs/trainers/DPDLoRA/${CFG}.yaml" ] || { echo "${SCRIPT}: no config configs/trainers/DPDLoRA/${CFG}.yaml (B2N_CFG / FS_CFG / XD_CFG)" >&2; exit 2; }

ALL_ROWS="lorss interaction scl pcgm"
ROW=${ROW:-${ALL_ROWS}}
row_opts() {  # row_opts ROW: sets OPTS to the row's TRAINER.DPDLORA switches
    local off=(TRAINER.DPDLORA.KL_WEIGHT 0.0 TRAINER.DPDLORA.ORTH_WEIGHT 0.0 TRAINER.DPDLORA.TEXT_LOSS_WEIGHT 0.0)
    case "$1" in
        lorss) OPTS=(TRAINER.DPDLORA.INTERACTION False TRAINER.DPDLORA.GATE False "${off[@]}") ;;
        interaction) OPTS=(TRAINER.DPDLORA.GATE False "${off[@]}") ;;
        scl) OPTS=(TRAINER.DPDLORA.GATE False) ;;
        pcgm) OPTS=() ;;
    esac
}
if [ "${PROTOCOL}" = ablation ]; then
    for _row in ${ROW}; do
        case " ${ALL_ROWS} " in
            *" ${_row} "*) ;;
            *) echo "${SCRIPT}: unknown ablation row '${_row}' in ROW: use lorss, interaction, scl or pcgm (default all four)" >&2; exit 2 ;;
        esac
    done
fi

TEACHER_DIR=${TEACHER_DIR:-}
[ "${TEACHER_DIR}" = / ] || TEACHER_DIR="${TEACHER_DIR%/}"
TEACHER_CFG=${TEACHER_CFG:-${CFG}}
if [ -n "${TEACHER_DIR}" ] && [ "${TEACHER_DIR}" = "${OUTPUT}" ] && [ "${TEACHER_CFG}" = "${CFG}" ] \
        && { [ "${PROTOCOL}" = base2new ] || [ "${PROTOCOL}" = fewshot ]; }; then
    echo "${SCRIPT}: TEACHER_DIR is OUTPUT (${OUTPUT}) and TEACHER_CFG the ${PROTOCOL} config (${CFG}): each job would read the teacher from its own folder; unset TEACHER_DIR (each run trains its teacher) or use another OUTPUT / TEACHER_CFG" >&2
    exit 2
fi

b2n_teacher() {  # b2n_teacher DATASET SEED: the base-to-new training folder under TEACHER_DIR (empty without it)
    [ -z "${TEACHER_DIR}" ] || echo "${TEACHER_DIR}/base2new/train_base/$1/shots_16/DPDLoRA/${TEACHER_CFG}/seed$2"
}

ablation_row() {  # ablation_row ROW DATASET SEED: b2n_train's and b2n_test's jobs with the row's switches and folders
    local row=$1 dataset=$2 seed=$3 teacher=""
    row_opts "${row}"
    local name=DPDLoRA_ablation_${row} config=configs/trainers/DPDLoRA/${B2N}.yaml
    local train_dir=${OUTPUT}/base2new/train_base/${dataset}/shots_16/${name}/${B2N}/seed${seed}
    local args=(--seed "${seed}" --trainer DPDLoRA --dataset-config-file "configs/datasets/${dataset}.yaml"
                --config-file "${config}")
    case "${row}" in scl|pcgm) teacher=$(b2n_teacher "${dataset}" "${seed}") ;; esac
    run_job "${train_dir}" "${args[@]}" DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES base \
        ${OPTS[@]+"${OPTS[@]}"} ${teacher:+TRAINER.DPDLORA.TEACHER_DIR "${teacher}"}
    run_job "${OUTPUT}/base2new/test_new/${dataset}/shots_16/${name}/${B2N}/seed${seed}" "${args[@]}" \
        --model-dir "${train_dir}" --load-epoch "${LOAD_EPOCH}" --eval-only DATASET.NUM_SHOTS 16 \
        DATASET.SUBSAMPLE_CLASSES new ${OPTS[@]+"${OPTS[@]}"}
}

case "${PROTOCOL}" in
    base2new)
        LOAD_EPOCH=${LOADEP:-$(max_epoch "configs/trainers/DPDLoRA/${B2N}.yaml")}  # read once, as protocol_loops does
        for DATASET in ${DATASETS}; do
            for SEED in ${SEEDS}; do
                TEACHER=$(b2n_teacher "${DATASET}" "${SEED}")
                b2n_train DPDLoRA "${B2N}" "${DATASET}" "${SEED}" ${TEACHER:+TRAINER.DPDLORA.TEACHER_DIR "${TEACHER}"}
                LOADEP=${LOAD_EPOCH} b2n_test DPDLoRA "${B2N}" "${DATASET}" "${SEED}"
            done
        done ;;
    fewshot)
        for DATASET in ${DATASETS}; do
            for SHOTS in ${SHOTS_LIST}; do
                for SEED in ${SEEDS}; do
                    TEACHER=${TEACHER_DIR:+${TEACHER_DIR}/${DATASET}/DPDLoRA/${TEACHER_CFG}_${SHOTS}shots/seed${SEED}}
                    fewshot_train DPDLoRA "${FS}" "${DATASET}" "${SEED}" "${SHOTS}" \
                        ${TEACHER:+TRAINER.DPDLORA.TEACHER_DIR "${TEACHER}"}
                done
            done
        done ;;
    xd|dg)
        protocol_loops DPDLoRA "${B2N}" "${FS}" "${XD}" "${PROTOCOL}" ;;
    ablation)
        LOAD_EPOCH=${LOADEP:-$(max_epoch "configs/trainers/DPDLoRA/${B2N}.yaml")}
        for _row in ${ROW}; do
            for DATASET in ${DATASETS}; do
                for SEED in ${SEEDS}; do ablation_row "${_row}" "${DATASET}" "${SEED}"; done
            done
        done ;;
esac
