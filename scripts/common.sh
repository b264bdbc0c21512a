#!/bin/bash
# Shared by every scripts/<trainer>/*.sh: they source it. It cd's to the repository root, checks the environment and
# defines run_job (one train.py run) and the protocol helpers (b2n_train, b2n_test, fewshot_train, xd_test,
# protocol_loops). The user-facing summary is scripts/README.md.
#
# Environment variables. Every script honours these, or says in its header comment why one does not apply:
#   DATA        Root of the benchmark datasets (train.py --root). Required: a script that trains or evaluates on them
#               exits at once, non-zero and before running anything, when DATA is unset or empty, e.g. run
#                   DATA=/path/to/datasets bash scripts/ivlp/run.sh base2new
#               With DRY_RUN=1 and no DATA the commands are printed with a literal "$DATA" in its place (to be pasted
#               into a shell where DATA is set).
#   OUTPUT      Output root (default: output). Every output directory of every script lies below it, in CoOp's folder
#               scheme, e.g. $OUTPUT/base2new/train_base/<dataset>/shots_16/<trainer>/<cfg>/seed<S>.
#               A relative DATA or OUTPUT is relative to the repository root (the scripts cd there).
#   DATASETS    Datasets to loop over (default: CoOp's 11, ALL_DATASETS below). A name without a
#               configs/datasets/<name>.yaml is an error at once. Cross-dataset / DG loops ignore it: their source is
#               imagenet and their targets are fixed (XD_TARGETS / DG_TARGETS below).
#   SEEDS       Seeds to loop over (default: 1 2 3).
#   SHOTS_LIST  Shot counts of the few-shot loops (default: 1 2 4 8 16).
#   DRY_RUN=1   Print each command (shell-quoted) instead of running it: nothing is trained and no directory is
#               created. Any value but empty or 0 counts. A finished job is still reported as skipped.
#   PYTHON      The interpreter (default: python). It also reads a config's MAX_EPOCH (the epoch to evaluate), even in
#               a dry run.
# Script-specific variables (CFG, LOADEP, SUB, B2N_CFG / FS_CFG / XD_CFG, BASE, ...) are described in each script.
#
# A job is skipped only when OUTPUT_DIR/results.json exists (train.py writes it atomically after the final test),
# so an interrupted run is re-run (and resumes from its checkpoints) instead of being mistaken for a finished one.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRIPT="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
SCRIPT="${SCRIPT#"${REPO_ROOT}"/}"  # the sourcing script, relative to the repository root (for messages)
cd "${REPO_ROOT}"
ALL_DATASETS="imagenet caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat ucf101"
XD_TARGETS="caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat ucf101"
DG_TARGETS="imagenetv2 imagenet_sketch imagenet_a imagenet_r"
OUTPUT="${OUTPUT:-output}"
[ "${OUTPUT}" = / ] || OUTPUT="${OUTPUT%/}"
PYTHON="${PYTHON:-python}"
DATASETS="${DATASETS:-${ALL_DATASETS}}"
SEEDS="${SEEDS:-1 2 3}"
SHOTS_LIST="${SHOTS_LIST:-1 2 4 8 16}"

dry_run() { [ -n "${DRY_RUN:-}" ] && [ "${DRY_RUN}" != 0 ]; }

# NEEDS_DATA=no (set by scripts/testbed/run.sh before sourcing): the script generates its own datasets.
if [ "${NEEDS_DATA:-yes}" != no ]; then
    if [ -z "${DATA:-}" ]; then
        if dry_run; then
            DATA='$DATA'  # printed as "$DATA"
        else
            echo "${SCRIPT}: DATA is not set; set it to the datasets root, e.g. DATA=/path/to/datasets bash ${SCRIPT}${*:+ $*} (or DRY_RUN=1 to only print the commands)" >&2
            exit 2
        fi
    fi
    for _dataset in ${DATASETS}; do
        if [ ! -f "configs/datasets/${_dataset}.yaml" ]; then
            echo "${SCRIPT}: unknown dataset '${_dataset}' in DATASETS (no configs/datasets/${_dataset}.yaml)" >&2
            exit 2
        fi
    done
fi

print_cmd() {  # print_cmd ARGS...: the command as one shell-quoted line (the DATA placeholder as "$DATA")
    local words=() arg
    for arg in "$@"; do
        if [ "${arg}" = '$DATA' ]; then
            words+=('"$DATA"')
        elif [[ "${arg}" =~ ^[A-Za-z0-9_./=:,+@%-]+$ ]]; then
            words+=("${arg}")
        else
            words+=("'${arg//\'/\'\\\'\'}'")
        fi
    done
    echo "${words[*]}"
}

run_cmd() {  # run_cmd CMD ARGS...: run it, or with DRY_RUN print it instead
    if dry_run; then
        print_cmd "$@"
        return 0
    fi
    "$@"
}

run_job() {  # run_job OUTPUT_DIR train.py-args...
    local dir="$1"
    shift
    if [ -f "${dir}/results.json" ]; then
        echo "Results are available in ${dir} (results.json). Skip this job"
        return 0
    fi
    echo "Run this job and save the output to ${dir}"
    run_cmd "${PYTHON}" train.py --root "${DATA}" --output-dir "${dir}" "$@"
}

# ---- protocol helpers (CoOp / CoCoOp / MaPLe / PromptSRC output-directory scheme, below $OUTPUT); TRAINER and the
# config names are arguments, extra train.py opts may follow. The epoch to load for evaluation is LOADEP, by default
# the config's MAX_EPOCH.
max_epoch() {  # max_epoch CONFIG_FILE
    "${PYTHON}" -c "import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))['OPTIM']['MAX_EPOCH'])" "$1"
}

b2n_train() {  # b2n_train TRAINER CFG DATASET SEED [opts...]
    local trainer=$1 cfg=$2 dataset=$3 seed=$4
    shift 4
    run_job "${OUTPUT}/base2new/train_base/${dataset}/shots_16/${trainer}/${cfg}/seed${seed}" --seed "${seed}" \
        --trainer "${trainer}" --dataset-config-file "configs/datasets/${dataset}.yaml" \
        --config-file "configs/trainers/${trainer}/${cfg}.yaml" DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES base "$@"
}

b2n_test() {  # b2n_test TRAINER CFG DATASET SEED [opts...]: evaluates the base-trained model on the new classes
    local trainer=$1 cfg=$2 dataset=$3 seed=$4 sub=${SUB:-new}
    shift 4
    local config="configs/trainers/${trainer}/${cfg}.yaml" load_epoch
    load_epoch=${LOADEP:-$(max_epoch "${config}")}
    run_job "${OUTPUT}/base2new/test_${sub}/${dataset}/shots_16/${trainer}/${cfg}/seed${seed}" --seed "${seed}" \
        --trainer "${trainer}" --dataset-config-file "configs/datasets/${dataset}.yaml" --config-file "${config}" \
        --model-dir "${OUTPUT}/base2new/train_base/${dataset}/shots_16/${trainer}/${cfg}/seed${seed}" \
        --load-epoch "${load_epoch}" --eval-only DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES "${sub}" "$@"
}

fewshot_train() {  # fewshot_train TRAINER CFG DATASET SEED SHOTS [opts...]: all classes, evaluated on the test set
    local trainer=$1 cfg=$2 dataset=$3 seed=$4 shots=$5
    shift 5
    run_job "${OUTPUT}/${dataset}/${trainer}/${cfg}_${shots}shots/seed${seed}" --seed "${seed}" --trainer "${trainer}" \
        --dataset-config-file "configs/datasets/${dataset}.yaml" --config-file "configs/trainers/${trainer}/${cfg}.yaml" \
        DATASET.NUM_SHOTS "${shots}" "$@"
}

xd_test() {  # xd_test TRAINER CFG TARGET SEED [opts...]: the ImageNet 16-shot model on a cross-dataset / DG target
    local trainer=$1 cfg=$2 dataset=$3 seed=$4
    shift 4
    local config="configs/trainers/${trainer}/${cfg}.yaml" load_epoch
    load_epoch=${LOADEP:-$(max_epoch "${config}")}
    run_job "${OUTPUT}/evaluation/${trainer}/${cfg}_16shots/${dataset}/seed${seed}" --seed "${seed}" \
        --trainer "${trainer}" --dataset-config-file "configs/datasets/${dataset}.yaml" --config-file "${config}" \
        --model-dir "${OUTPUT}/imagenet/${trainer}/${cfg}_16shots/seed${seed}" \
        --load-epoch "${load_epoch}" --eval-only "$@"
}

coop_epochs() {  # coop_epochs SHOTS DATASET: CoOp's few-shot epochs per shot count (50 / 100 / 200; ImageNet 50)
    case "$1" in 1) echo 50 ;; 2|4) [ "$2" = imagenet ] && echo 50 || echo 100 ;; *) [ "$2" = imagenet ] && echo 50 || echo 200 ;; esac
}

protocol_loops() {  # protocol_loops TRAINER B2N_CFG FEWSHOT_CFG XD_CFG PROTOCOL: one protocol over datasets and seeds
    # "{ep}" in FEWSHOT_CFG stands for CoOp's epochs of the shot count (coop_epochs), e.g. vit_b16_ep{ep}.
    # base2new and fewshot loop over DATASETS (and SHOTS_LIST) and SEEDS; xd / dg train on imagenet and evaluate on
    # XD_TARGETS / DG_TARGETS for each of SEEDS. The evaluation epoch is read once per protocol.
    local trainer=$1 b2n_cfg=$2 fs_cfg=$3 xd_cfg=$4 protocol=$5 load_epoch dataset seed shots
    case "${protocol}" in
        base2new)
            load_epoch=${LOADEP:-$(max_epoch "configs/trainers/${trainer}/${b2n_cfg}.yaml")}
            for dataset in ${DATASETS}; do for seed in ${SEEDS}; do
                b2n_train "${trainer}" "${b2n_cfg}" "${dataset}" "${seed}"
                LOADEP=${load_epoch} b2n_test "${trainer}" "${b2n_cfg}" "${dataset}" "${seed}"
            done; done ;;
        fewshot)
            for dataset in ${DATASETS}; do for shots in ${SHOTS_LIST}; do
                local cfg=${fs_cfg//\{ep\}/$(coop_epochs "${shots}" "${dataset}")}
                for seed in ${SEEDS}; do fewshot_train "${trainer}" "${cfg}" "${dataset}" "${seed}" "${shots}"; done
            done; done ;;
        xd|dg)
            local targets=${XD_TARGETS}
            [ "${protocol}" = dg ] && targets=${DG_TARGETS}
            load_epoch=${LOADEP:-$(max_epoch "configs/trainers/${trainer}/${xd_cfg}.yaml")}
            for seed in ${SEEDS}; do
                fewshot_train "${trainer}" "${xd_cfg}" imagenet "${seed}" 16
                for dataset in ${targets}; do LOADEP=${load_epoch} xd_test "${trainer}" "${xd_cfg}" "${dataset}" "${seed}"; done
            done ;;
        *) echo "unknown protocol ${protocol}: use base2new, fewshot, xd or dg" >&2; return 2 ;;
    esac
}
