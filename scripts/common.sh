#!/bin/bash
# Shared by the scripts/<trainer>/*.sh loops. Source it; then call `run_job OUTPUT_DIR train.py-args...`.
# A job is skipped only when OUTPUT_DIR/results.json exists (train.py writes it atomically after the final test),
# so an interrupted run is re-run (and resumes from its checkpoints) instead of being mistaken for a finished one.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${REPO_ROOT}"
DATA="${DATA:-/path/to/datasets}"
PYTHON="${PYTHON:-python}"
SEEDS="${SEEDS:-1 2 3}"
ALL_DATASETS="imagenet caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat ucf101"
XD_TARGETS="caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat ucf101"
DG_TARGETS="imagenetv2 imagenet_sketch imagenet_a imagenet_r"

run_job() {
    local dir="$1"
    shift
    if [ -f "${dir}/results.json" ]; then
        echo "Results are available in ${dir} (results.json). Skip this job"
        return 0
    fi
    echo "Run this job and save the output to ${dir}"
    if [ -n "${DRY_RUN:-}" ]; then  # print the command instead of running it
        echo "${PYTHON} train.py --root ${DATA} --output-dir ${dir} $*"
        return 0
    fi
    "${PYTHON}" train.py --root "${DATA}" --output-dir "${dir}" "$@"
}

# ---- protocol helpers (CoOp / CoCoOp / MaPLe / PromptSRC output-directory scheme); TRAINER and the config names are
# arguments, extra train.py opts may follow. The epoch to load for evaluation is read from the config's MAX_EPOCH.
max_epoch() {  # max_epoch CONFIG_FILE
    "${PYTHON}" -c "import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))['OPTIM']['MAX_EPOCH'])" "$1"
}

b2n_train() {  # b2n_train TRAINER CFG DATASET SEED [opts...]
    local trainer=$1 cfg=$2 dataset=$3 seed=$4
    shift 4
    run_job "output/base2new/train_base/${dataset}/shots_16/${trainer}/${cfg}/seed${seed}" --seed "${seed}" \
        --trainer "${trainer}" --dataset-config-file "configs/datasets/${dataset}.yaml" \
        --config-file "configs/trainers/${trainer}/${cfg}.yaml" DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES base "$@"
}

b2n_test() {  # b2n_test TRAINER CFG DATASET SEED [opts...]: evaluates the base-trained model on the new classes
    local trainer=$1 cfg=$2 dataset=$3 seed=$4 sub=${SUB:-new}
    shift 4
    local config="configs/trainers/${trainer}/${cfg}.yaml"
    run_job "output/base2new/test_${sub}/${dataset}/shots_16/${trainer}/${cfg}/seed${seed}" --seed "${seed}" \
        --trainer "${trainer}" --dataset-config-file "configs/datasets/${dataset}.yaml" --config-file "${config}" \
        --model-dir "output/base2new/train_base/${dataset}/shots_16/${trainer}/${cfg}/seed${seed}" \
        --load-epoch "${LOADEP:-$(max_epoch "${config}")}" --eval-only \
        DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES "${sub}" "$@"
}

fewshot_train() {  # fewshot_train TRAINER CFG DATASET SEED SHOTS [opts...]: all classes, evaluated on the test set
    local trainer=$1 cfg=$2 dataset=$3 seed=$4 shots=$5
    shift 5
    run_job "output/${dataset}/${trainer}/${cfg}_${shots}shots/seed${seed}" --seed "${seed}" --trainer "${trainer}" \
        --dataset-config-file "configs/datasets/${dataset}.yaml" --config-file "configs/trainers/${trainer}/${cfg}.yaml" \
        DATASET.NUM_SHOTS "${shots}" "$@"
}

xd_test() {  # xd_test TRAINER CFG TARGET SEED [opts...]: the ImageNet 16-shot model on a cross-dataset / DG target
    local trainer=$1 cfg=$2 dataset=$3 seed=$4
    shift 4
    local config="configs/trainers/${trainer}/${cfg}.yaml"
    run_job "output/evaluation/${trainer}/${cfg}_16shots/${dataset}/seed${seed}" --seed "${seed}" \
        --trainer "${trainer}" --dataset-config-file "configs/datasets/${dataset}.yaml" --config-file "${config}" \
        --model-dir "output/imagenet/${trainer}/${cfg}_16shots/seed${seed}" \
        --load-epoch "${LOADEP:-$(max_epoch "${config}")}" --eval-only "$@"
}

coop_epochs() {  # coop_epochs SHOTS DATASET: CoOp's few-shot epochs per shot count (50 / 100 / 200; ImageNet 50)
    case "$1" in 1) echo 50 ;; 2|4) [ "$2" = imagenet ] && echo 50 || echo 100 ;; *) [ "$2" = imagenet ] && echo 50 || echo 200 ;; esac
}

protocol_loops() {  # protocol_loops TRAINER B2N_CFG FEWSHOT_CFG XD_CFG PROTOCOL: one protocol over datasets and seeds
    # "{ep}" in FEWSHOT_CFG stands for CoOp's epochs of the shot count (coop_epochs), e.g. vit_b16_ep{ep}
    local trainer=$1 b2n_cfg=$2 fs_cfg=$3 xd_cfg=$4 protocol=$5
    case "${protocol}" in
        base2new)
            for dataset in ${DATASETS:-${ALL_DATASETS}}; do for seed in ${SEEDS}; do
                b2n_train "${trainer}" "${b2n_cfg}" "${dataset}" "${seed}"
                b2n_test "${trainer}" "${b2n_cfg}" "${dataset}" "${seed}"
            done; done ;;
        fewshot)
            for dataset in ${DATASETS:-${ALL_DATASETS}}; do for shots in ${SHOTS_LIST:-1 2 4 8 16}; do
                local cfg=${fs_cfg//\{ep\}/$(coop_epochs "${shots}" "${dataset}")}
                for seed in ${SEEDS}; do fewshot_train "${trainer}" "${cfg}" "${dataset}" "${seed}" "${shots}"; done
            done; done ;;
        xd|dg)
            local targets=${XD_TARGETS}
            [ "${protocol}" = dg ] && targets=${DG_TARGETS}
            for seed in ${SEEDS}; do
                fewshot_train "${trainer}" "${xd_cfg}" imagenet "${seed}" 16
                for dataset in ${targets}; do xd_test "${trainer}" "${xd_cfg}" "${dataset}" "${seed}"; done
            done ;;
        *) echo "unknown protocol ${protocol}: use base2new, fewshot, xd or dg" >&2; return 2 ;;
    esac
}
