#!/usr/bin/env bash
# Distributed testing with torchrun (as mmseg's tools/dist_test.sh).
#   bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py options]
# On CPUs (processes instead of GPUs) add
#   --cfg-options env_cfg.dist_cfg.backend=gloo
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT; PYTHON picks the
# interpreter.
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 CONFIG CHECKPOINT GPUS [test.py options]" >&2
    exit 2
fi
PYTHONPATH="$(dirname "$0")/..":${PYTHONPATH:-} \
"${PYTHON:-python}" -m torch.distributed.run --nnodes="${NNODES:-1}" \
    --node_rank="${NODE_RANK:-0}" --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --nproc_per_node="$3" --master_port="${PORT:-29500}" \
    "$(dirname "$0")/test.py" "$1" "$2" --launcher pytorch "${@:4}"
