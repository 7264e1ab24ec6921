#!/usr/bin/env bash
# Distributed training with torchrun (as mmseg's tools/dist_train.sh).
#   bash tools/dist_train.sh CONFIG GPUS [train.py options]
# The paper's schedule: bash tools/dist_train.sh CONFIG 8
# On CPUs (processes instead of GPUs) add
#   --cfg-options env_cfg.dist_cfg.backend=gloo
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT; PYTHON picks the
# interpreter.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG GPUS [train.py options]" >&2
    exit 2
fi
PYTHONPATH="$(dirname "$0")/..":${PYTHONPATH:-} \
"${PYTHON:-python}" -m torch.distributed.run --nnodes="${NNODES:-1}" \
    --node_rank="${NODE_RANK:-0}" --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --nproc_per_node="$2" --master_port="${PORT:-29500}" \
    "$(dirname "$0")/train.py" "$1" --launcher pytorch "${@:3}"
