#!/usr/bin/env bash
# The demo: set up (or reuse) the environment, then train a small
# PSPNet-RepVGG on the built-in Cityscapes-format data, test it
# re-parameterized and print per-class IoU and mIoU.
#   bash tools/demo.sh [tools/demo.py args...]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$REPO_ROOT"
exec "$PY" tools/demo.py "$@"
