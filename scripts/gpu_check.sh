#!/bin/bash
# The prepared GPU check, one command, about 8 minutes on one H100 / H200 (target: under 8 minutes):
#   1. python -m vlpeft.gpucheck: every registered trainer on random ViT-B/16 weights (no download, no dataset):
#      50 fp16 training steps with finite losses, fp16 vs fp32 logits (top-1 agreement >= 99%), merged vs unmerged
#      weights for the methods with weight edits. Budget 200 s: no trainer is started past it (those are listed as
#      skipped in the report).
#   2. python -m vlpeft.bench --all --prec fp16 amp --budget 240: the speed benchmark suite (OUT_DIR/bench/).
#   3. one report of both: OUT_DIR/report.md (+ report.json); the benchmark's bench.md is included when it wrote one.
# Run:   bash scripts/gpu_check.sh [OUT_DIR]         (default $OUTPUT/gpu_check, i.e. output/gpu_check)
# Needs: a CUDA GPU. On a CPU-only machine it runs (slowly: ViT-B/16 on the CPU), but half precision falls back to fp32
# there and the report says that the half-precision checks did not run at half precision.
# Exit code: non-zero when a trainer failed the check or the benchmark failed; the report is written in both cases.
# Variables (scripts/common.sh): OUTPUT, DRY_RUN (print the commands), PYTHON. DATA, DATASETS, SEEDS and SHOTS_LIST
# do not apply: no dataset is read (random images and weights, fixed seed). A relative OUT_DIR is relative to the
# repository root, as OUTPUT is.
set -euo pipefail
NEEDS_DATA=no  # common.sh does not ask for DATA
source "$(dirname "$0")/common.sh"
OUT_DIR="${1:-${OUTPUT}/gpu_check}"
started=$(date +%s)  # the report leaves out files older than this run
check_rc=0
bench_rc=0
run_cmd "${PYTHON}" -m vlpeft.gpucheck --out "${OUT_DIR}" --budget 200 || check_rc=$?
run_cmd "${PYTHON}" -m vlpeft.bench --all --prec fp16 amp --budget 240 --out "${OUT_DIR}/bench" || bench_rc=$?
run_cmd "${PYTHON}" -m vlpeft.gpucheck --out "${OUT_DIR}" --finish --gpucheck-rc "${check_rc}" \
    --bench-rc "${bench_rc}" --since "${started}"
if ! dry_run; then
    echo "Report: ${OUT_DIR}/report.md (gpucheck exit code ${check_rc}, bench exit code ${bench_rc})"
fi
[ "${check_rc}" = 0 ] && [ "${bench_rc}" = 0 ]
