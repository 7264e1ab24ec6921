#!/usr/bin/env bash
# The GPU path in one prepared run; see tools/gpu_check.py and tools/gpu/.
# On the GPU machine, carrying wheelhouse/ (bash tools/gpu_wheelhouse.sh):
#   bash tools/gpu_check.sh
# Here, as the test suite does (no install, CPU, tiny shapes):
#   bash tools/gpu_check.sh --device cpu --skip-install --out DIR
#   PYTHON=...  interpreter (default: python3, the GPU image's torch)
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
# The project runs from the working tree: nothing to build or install.
export PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
exec "${PYTHON:-python3}" tools/gpu_check.py "$@"
