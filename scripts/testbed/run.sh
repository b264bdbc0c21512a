#!/bin/bash
# The CPU testbed benchmark: every registered trainer x the 4 testbed datasets x seeds 1-3, base-to-new and few-shot,
# written to output/testbed/results.md (seed-averaged base, new, H of the averages; seconds per run).
# Extra arguments go to python -m vlpeft.testbed.accuracy, e.g.:  bash scripts/testbed/run.sh --protocols b2n --trainers ZeroshotCLIP CoOp
cd "$(dirname "$0")/../.." || exit 1
exec "${PYTHON:-python}" -m vlpeft.testbed.accuracy "$@"
