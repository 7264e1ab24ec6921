#!/usr/bin/env bash
# Testing on a Slurm cluster (as mmseg's tools/slurm_test.sh).
#   GPUS=8 bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT \
#       [options]
# GPUS_PER_NODE, CPUS_PER_TASK, SRUN_ARGS and PYTHON as in mmseg.
set -x
GPUS_PER_NODE=${GPUS_PER_NODE:-8}

PYTHONPATH="$(dirname "$0")/..":${PYTHONPATH:-} \
srun -p "$1" --job-name="$2" --gres=gpu:"${GPUS_PER_NODE}" \
    --ntasks="${GPUS:-8}" --ntasks-per-node="${GPUS_PER_NODE}" \
    --cpus-per-task="${CPUS_PER_TASK:-5}" --kill-on-bad-exit=1 \
    ${SRUN_ARGS:-} \
    "${PYTHON:-python}" -u "$(dirname "$0")/test.py" "$3" "$4" \
    --launcher="slurm" "${@:5}"
