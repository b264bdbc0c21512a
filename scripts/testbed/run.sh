#!/bin/bash
# The CPU testbed benchmark: every registered trainer x the 4 testbed datasets x SEEDS (default 1 2 3), base-to-new and
# few-shot (K in SHOTS_LIST, default 1 2 4 8 16), written to $OUTPUT/testbed/results.md (seed-averaged base, new, H of
# the averages; seconds per run). Extra arguments go to python -m vlpeft.testbed.accuracy (they override the
# variables), e.g.:  bash scripts/testbed/run.sh --protocols b2n --trainers ZeroshotCLIP CoOp
# Variables (scripts/common.sh): OUTPUT, SEEDS, SHOTS_LIST, DRY_RUN, PYTHON. DATA and DATASETS do not apply: the
# testbed generates its own datasets (choose among them with --datasets).
NEEDS_DATA=no  # common.sh does not ask for DATA
source "$(dirname "$0")/../common.sh"
run_cmd "${PYTHON}" -m vlpeft.testbed.accuracy --seeds ${SEEDS} --shots ${SHOTS_LIST} --output "${OUTPUT}/testbed" "$@"
