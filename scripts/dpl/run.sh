#!/bin/bash
# DPL over DATASETS (default the 11) and SEEDS (default 1 2 3), both stages: [SEARCH_SEED=S] bash scripts/dpl/run.sh fewshot|base2new
# fewshot (the DPL paper's protocol: all classes, 16 shots; the shot counts are SHOTS_LIST, whose default is 16 here,
# not common.sh's 1 2 4 8 16) and base2new (an extra: 16 shots of the base classes), for each dataset x seed:
# (1) the search (DPLSearch: it writes <run>/lengths.json and <run>/alpha/epoch_<E>.json), (2) DPL trained from scratch
# with the found lengths (TRAINER.DPL.SEARCH_DIR the search's run folder; same dataset, classes, shots and seed),
# (3) base2new only: DPL evaluated on the new classes (--model-dir the DPL training folder; TRAINER.DPL.SEARCH_DIR is
# passed again, since the model is rebuilt from the found lengths before its prompts are loaded).
# SEARCH_SEED=S: the search runs once per dataset (and shot count), with seed S, before the trainings, and every seed
# of SEEDS trains on it (S need not be in SEEDS); unset or empty: each seed searches with its own seed. A DPL folder's
# name does not say which search it was trained on, so use another OUTPUT when switching SEARCH_SEED on or off (a
# finished DPL job is skipped whatever search it was trained on).
# Configs: SEARCH_CFG (configs/trainers/DPLSearch/, default vit_b16_fewshot) and TRAIN_CFG (configs/trainers/DPL/,
# default vit_b16_fewshot), for both protocols. Output, in common.sh's scheme: fewshot
# $OUTPUT/<dataset>/{DPLSearch/SEARCH_CFG,DPL/TRAIN_CFG}_<K>shots/seed<S>; base2new
# $OUTPUT/base2new/train_base/<dataset>/shots_16/{DPLSearch/SEARCH_CFG,DPL/TRAIN_CFG}/seed<S> and
# $OUTPUT/base2new/test_new/<dataset>/shots_16/DPL/TRAIN_CFG/seed<S>.
# Variables (scripts/common.sh): DATA, OUTPUT, DATASETS, SEEDS, SHOTS_LIST (fewshot; default 16), DRY_RUN, PYTHON, and
# LOADEP (base2new: the DPL epoch evaluated; default TRAIN_CFG's MAX_EPOCH). SHOTS_LIST does not apply to base2new
# (16 shots). xd / dg are not DPL protocols (the paper reports few-shot on the 11 datasets) and are refused, as are an
# unknown protocol, a missing config and a SEARCH_SEED that is not a number (exit 2). A job whose output directory holds
# results.json is skipped, so a finished search is not rerun and a later DPL training still reads it.
_DPL_SHOTS_LIST=${SHOTS_LIST:-16}  # before common.sh sets its own default (1 2 4 8 16)
source "$(dirname "$0")/../common.sh"
SHOTS_LIST=${_DPL_SHOTS_LIST}
PROTOCOL=${1:-}
case "${PROTOCOL}" in
    fewshot|base2new) ;;
    xd|dg) echo "${SCRIPT}: ${PROTOCOL} is not a DPL protocol (the DPL paper reports few-shot on the 11 datasets; base2new is an extra): use fewshot or base2new" >&2; exit 2 ;;
    *) echo "${SCRIPT}: ${PROTOCOL:+unknown protocol '${PROTOCOL}'}${PROTOCOL:-no protocol}: usage [SEARCH_SEED=S] bash ${SCRIPT} fewshot|base2new" >&2; exit 2 ;;
esac
SEARCH=${SEARCH_CFG:-vit_b16_fewshot}
TRAIN=${TRAIN_CFG:-vit_b16_fewshot}
for _config in "configs/trainers/DPLSearch/${SEARCH}.yaml" "configs/trainers/DPL/${TRAIN}.yaml"; do
    [ -f "${_config}" ] || { echo "${SCRIPT}: no config ${_config} (SEARCH_CFG / TRAIN_CFG)" >&2; exit 2; }
done
SEARCH_SEED=${SEARCH_SEED:-}
if [ -n "${SEARCH_SEED}" ] && ! [[ "${SEARCH_SEED}" =~ ^[0-9]+$ ]]; then
    echo "${SCRIPT}: SEARCH_SEED must be a seed (a non-negative integer) or unset, got '${SEARCH_SEED}'" >&2
    exit 2
fi

if [ "${PROTOCOL}" = fewshot ]; then
    for DATASET in ${DATASETS}; do
        for SHOTS in ${SHOTS_LIST}; do
            [ -z "${SEARCH_SEED}" ] || fewshot_train DPLSearch "${SEARCH}" "${DATASET}" "${SEARCH_SEED}" "${SHOTS}"
            for SEED in ${SEEDS}; do
                [ -n "${SEARCH_SEED}" ] || fewshot_train DPLSearch "${SEARCH}" "${DATASET}" "${SEED}" "${SHOTS}"
                # fewshot_train's output folder of the search this seed trains on
                SEARCH_DIR=${OUTPUT}/${DATASET}/DPLSearch/${SEARCH}_${SHOTS}shots/seed${SEARCH_SEED:-${SEED}}
                fewshot_train DPL "${TRAIN}" "${DATASET}" "${SEED}" "${SHOTS}" TRAINER.DPL.SEARCH_DIR "${SEARCH_DIR}"
            done
        done
    done
else
    DPL_EP=${LOADEP:-$(max_epoch "configs/trainers/DPL/${TRAIN}.yaml")}  # read once (as protocol_loops does)
    for DATASET in ${DATASETS}; do
        [ -z "${SEARCH_SEED}" ] || b2n_train DPLSearch "${SEARCH}" "${DATASET}" "${SEARCH_SEED}"
        for SEED in ${SEEDS}; do
            [ -n "${SEARCH_SEED}" ] || b2n_train DPLSearch "${SEARCH}" "${DATASET}" "${SEED}"
            # b2n_train's output folder of the search this seed trains on
            SEARCH_DIR=${OUTPUT}/base2new/train_base/${DATASET}/shots_16/DPLSearch/${SEARCH}/seed${SEARCH_SEED:-${SEED}}
            b2n_train DPL "${TRAIN}" "${DATASET}" "${SEED}" TRAINER.DPL.SEARCH_DIR "${SEARCH_DIR}"
            LOADEP=${DPL_EP} b2n_test DPL "${TRAIN}" "${DATASET}" "${SEED}" TRAINER.DPL.SEARCH_DIR "${SEARCH_DIR}"
        done
    done
fi
