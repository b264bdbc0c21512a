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
    "${PYTHON}" train.py --root "${DATA}" --output-dir "${dir}" "$@"
}
