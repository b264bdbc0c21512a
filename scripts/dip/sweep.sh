#!/bin/bash
# Select DIP's lost hyperparameters (lr, epochs, dropout) on the few-shot val split of the base classes, never on test:
#   DATA=/path/to/datasets bash scripts/dip/sweep.sh [DIP|DIPMaPLe]
# ImageNet is left out (its val split is its test set). Results: $OUTPUT/sweep/<trainer>/selection.json; then pass the
# selected values as overrides (KEY VALUE) to scripts/dip/run.sh / scripts/dipmaple/run.sh or edit the configs.
# The grid: LRS, EPOCHS, DROPOUTS (comma-separated). On the CPU testbed, CoOp's lr 0.002 left DIP's product P_A P_B at
# 1.6% of the norm of P_init after 150 steps (effectively zero-shot), hence the larger learning rates in the default grid.
# Variables (scripts/common.sh): DATA, OUTPUT, DATASETS (imagenet skipped), SEEDS, DRY_RUN (prints the one
# python -m vlpeft.sweep command), PYTHON. SHOTS_LIST does not apply (the selection uses 16 shots of the base classes).
source "$(dirname "$0")/../common.sh"
TRAINER=${1:-DIP}
case "${TRAINER}" in
    DIP) CFG=configs/trainers/DIP/vit_b16_ep20_ctxv1.yaml; NODE=DIP; LRS=${LRS:-0.002,0.02,0.2}
         EPOCHS=${EPOCHS:-10,20,50} ;;
    DIPMaPLe) CFG=configs/trainers/DIPMaPLe/vit_b16_c2_ep5_batch4_4ctx.yaml; NODE=DIPMAPLE; LRS=${LRS:-0.0035,0.035}
              EPOCHS=${EPOCHS:-5,10} ;;
    *) echo "usage: bash scripts/dip/sweep.sh [DIP|DIPMaPLe], got ${TRAINER}" >&2; exit 2 ;;
esac
DATASET_FILES=()
for dataset in ${DATASETS}; do
    [ "${dataset}" = imagenet ] || DATASET_FILES+=("configs/datasets/${dataset}.yaml")
done
if [ ${#DATASET_FILES[@]} = 0 ]; then
    echo "scripts/dip/sweep.sh: no dataset left to sweep on (DATASETS=${DATASETS}; imagenet is skipped)" >&2
    exit 2
fi
run_cmd "${PYTHON}" -m vlpeft.sweep --trainer "${TRAINER}" --config-file "${CFG}" --root "${DATA}" --seeds ${SEEDS} \
    --datasets "${DATASET_FILES[@]}" --output "${OUTPUT}/sweep/${TRAINER}" \
    --grid "OPTIM.LR=${LRS}" "TRAINER.${NODE}.DROPOUT=${DROPOUTS:-0.1,0.25,0.5}" "OPTIM.MAX_EPOCH=${EPOCHS}"
