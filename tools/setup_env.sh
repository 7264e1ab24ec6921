#!/usr/bin/env bash
# Create or reuse the project's virtual environment and install everything.
#
# Sourced by tools/demo.sh and tools/run_tests.sh; run it alone to set up.
# Idempotent: a second run only checks what is there (seconds).
#   VENV=/path   where the environment lives (default: <repo>/.venv)
#   PYTHON=...   the interpreter that creates it (default: python3)
# The first run on a machine builds mmcv 2.1.0 with its compiled ops from
# source (PyPI has no wheel for current torch): about 14 minutes on 2 cores.
# pip keeps the built wheel in its cache, so later set-ups take seconds.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$REPO_ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
MMCV_VERSION="2.1.0"

log() { printf '[setup] %s\n' "$*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtual environment at $VENV"
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
pip_install() { "$PY" -m pip install --disable-pip-version-check -q "$@"; }

# One interpreter start tells what is missing (each import costs seconds).
MISSING="$("$PY" - "$MMCV_VERSION" <<'PYEOF'
import importlib.util as u, sys, warnings
warnings.simplefilter("ignore")
def ok(code):
    try:
        exec(code, {})
        return True
    except Exception:
        return False
missing = []
if not ok('import pkg_resources, wheel'):
    missing.append('setuptools')
if u.find_spec('torch') is None:
    missing.append('torch')
if not ok('import mmcv, mmcv.ops; assert mmcv.__version__ == %r' % sys.argv[1]):
    missing.append('mmcv')
print(' '.join(missing))
PYEOF
)"

# setuptools < 82 keeps pkg_resources, which mmengine and the mmcv build need.
if [[ " $MISSING " == *" setuptools "* ]]; then
    pip_install "setuptools>=77,<82" wheel
fi

# Respect a torch that is already installed (a CUDA build, say); otherwise
# take the pinned release (a CPU build here), not a multi-GB CUDA download.
if [[ " $MISSING " == *" torch "* ]]; then
    log "installing torch==$TORCH_VERSION"
    pip_install "torch==$TORCH_VERSION"
fi

# mmcv must be built against this torch, without build isolation (an
# isolated build has no torch), and before the package: otherwise pip would
# resolve it on its own.
if [[ " $MISSING " == *" mmcv "* ]]; then
    pip_install numpy ninja "mmengine>=0.10,<0.11" opencv-python
    if "$PY" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null \
        && command -v nvcc >/dev/null 2>&1; then
        export FORCE_CUDA=1
    fi
    log "building mmcv==$MMCV_VERSION with ops (first time: ~14 min on 2 cores)"
    MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
        pip_install --no-build-isolation "mmcv==$MMCV_VERSION"
fi

# The package itself, editable, with the test and export extras. Skipped
# when setup.cfg has not changed since the last install.
STAMP="$VENV/.mmseg_repvgg_setup"
WANT="$(cat "$REPO_ROOT/setup.cfg" "$REPO_ROOT/pyproject.toml" | cksum) $REPO_ROOT"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ] \
    || [ -n "$MISSING" ] \
    || ! "$PY" -c 'import importlib.util as u, sys; sys.exit(u.find_spec("mmseg_repvgg") is None)'; then
    log "installing mmseg-repvgg (editable) and its dependencies"
    pip_install --no-build-isolation -e "$REPO_ROOT[tests]"
    echo "$WANT" > "$STAMP"
fi
export VENV PY REPO_ROOT
