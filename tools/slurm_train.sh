#!/usr/bin/env bash
# Training on a Slurm cluster (as mmseg's tools/slurm_train.sh).
#   GPUS=8 bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG [options]
# The paper's global batch of 16 is GPUS=8 (2 images per GPU).
# GPUS_PER_NODE, CPUS_PER_TASK, SRUN_ARGS and PYTHON as in mmseg.
set -x
GPUS_PER_NODE=${GPUS_PER_NODE:-8}

PYTHONPATH="$(dirname "$0")/..":${PYTHONPATH:-} \
srun -p "$1" --job-name="$2" --gres=gpu:"${GPUS_PER_NODE}" \
    --ntasks="${GPUS:-8}" --ntasks-per-node="${GPUS_PER_NODE}" \
    --cpus-per-task="${CPUS_PER_TASK:-5}" --kill-on-bad-exit=1 \
    ${SRUN_ARGS:-} \
    "${PYTHON:-python}" -u "$(dirname "$0")/train.py" "$3" \
    --launcher="slurm" "${@:4}"
