#!/bin/bash
# Select DIP's lost hyperparameters (lr, epochs, dropout) on the few-shot val split of the base classes, never on test:
#   DATA=/path/to/datasets bash scripts/dip/sweep.sh [DIP|DIPMaPLe]
# ImageNet is left out (its val split is its test set). Results: output/sweep/<trainer>/selection.json; then pass the
# selected values as overrides (KEY VALUE) to scripts/dip/run.sh / scripts/dipmaple/run.sh or edit the configs.
# On the CPU testbed, CoOp's lr 0.002 left DIP's product P_A P_B at 1.6% of the norm of P_init after 150 steps
# (effectively zero-shot), hence the larger learning rates in the default grid.
source "$(dirname "$0")/../common.sh"
TRAINER=${1:-DIP}
if [ "${TRAINER}" = DIP ]; then
    CFG=configs/trainers/DIP/vit_b16_ep20_ctxv1.yaml; NODE=DIP; LRS=${LRS:-0.002,0.02,0.2}; EPOCHS=${EPOCHS:-10,20,50}
else
    CFG=configs/trainers/DIPMaPLe/vit_b16_c2_ep5_batch4_4ctx.yaml; NODE=DIPMAPLE; LRS=${LRS:-0.0035,0.035}
    EPOCHS=${EPOCHS:-5,10}
fi
DATASET_FILES=""
for dataset in ${DATASETS:-${ALL_DATASETS}}; do
    [ "${dataset}" = imagenet ] || DATASET_FILES="${DATASET_FILES} configs/datasets/${dataset}.yaml"
done
"${PYTHON}" -m vlpeft.sweep --trainer "${TRAINER}" --config-file "${CFG}" --root "${DATA}" --seeds ${SEEDS} \
    --datasets ${DATASET_FILES} --output "output/sweep/${TRAINER}" \
    --grid "OPTIM.LR=${LRS}" "TRAINER.${NODE}.DROPOUT=${DROPOUTS:-0.1,0.25,0.5}" "OPTIM.MAX_EPOCH=${EPOCHS}"
