#!/usr/bin/env bash
# Create or reuse the project's virtual environment and install everything;
# a second run only checks (seconds). Sourced by tools/demo.sh and
# tools/run_tests.sh.
#   VENV=/path   where the environment lives (default: <repo>/.venv)
#   PYTHON=...   the interpreter that creates it (default: python3)
# The first run builds mmcv 2.1.0 with its ops from source (no wheel for
# current torch): about 14 minutes on 2 cores; pip caches the wheel.
#
# Offline, from what tools/gpu_wheelhouse.sh filled (a CUDA machine, say):
#   WHEELHOUSE=DIR bash tools/setup_env.sh
# installs into PYTHON's own environment, no venv, so its CUDA torch stays
# in use: DIR's wheels with --no-index --no-deps, mmcv built from its
# source, then this package, editable, without its extras.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
MMCV_VERSION="2.1.0"
WHEELHOUSE="${WHEELHOUSE:-}"
PINS="$REPO_ROOT/tools/gpu_wheelhouse.txt"

log() { printf '[setup] %s\n' "$*" >&2; }
fail() { printf 'error: %s\n' "$*" >&2; exit 2; }

if [ -n "$WHEELHOUSE" ]; then
    [ -d "$WHEELHOUSE" ] || fail "WHEELHOUSE=$WHEELHOUSE is not a folder;" \
        "fill it with bash tools/gpu_wheelhouse.sh where pip reaches an index"
    cmp -s "$PINS" "$WHEELHOUSE/gpu_wheelhouse.txt" \
        || fail "WHEELHOUSE=$WHEELHOUSE was not filled for" \
            "tools/gpu_wheelhouse.txt as it is now; run" \
            "bash tools/gpu_wheelhouse.sh again"
    PY="$PYTHON"
    pip_install() {
        "$PY" -m pip install --disable-pip-version-check -q --no-index \
            --find-links "$WHEELHOUSE" --no-deps "$@"
    }
else
    VENV="${VENV:-$REPO_ROOT/.venv}"
    if [ ! -x "$VENV/bin/python" ]; then
        log "creating virtual environment at $VENV"
        "$PYTHON" -m venv "$VENV"
    fi
    PY="$VENV/bin/python"
    pip_install() { "$PY" -m pip install --disable-pip-version-check -q "$@"; }
    export VENV
fi

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
    [ -z "$WHEELHOUSE" ] || fail "$PY has no torch, and a wheelhouse carries" \
        "none: install torch there first"
    log "installing torch==$TORCH_VERSION"
    pip_install "torch==$TORCH_VERSION"
fi

# The wheelhouse's list; pip skips what is installed at its version.
if [ -n "$WHEELHOUSE" ]; then
    log "installing the wheels of $WHEELHOUSE"
    pip_install -r <(grep -v -E '^(mmcv|setuptools)==' "$PINS")
fi

# mmcv is built against this torch (no build isolation: it would have no
# torch), before the package, which pip would otherwise resolve it for.
if [[ " $MISSING " == *" mmcv "* ]] && [ -n "$WHEELHOUSE" ]; then
    # mmseg only imports mmcv.ops: CPU ops, unoptimized, take minutes; a
    # failed quick build is retried with the default flags.
    log "building mmcv==$MMCV_VERSION with CPU ops from $WHEELHOUSE"
    (
        export CUDA_VISIBLE_DEVICES= FORCE_CUDA=0 MMCV_WITH_OPS=1 \
            MAX_JOBS="${MAX_JOBS:-$(nproc)}"
        CFLAGS='-O0 -g0' pip_install --no-build-isolation "mmcv==$MMCV_VERSION" \
            || pip_install --no-build-isolation "mmcv==$MMCV_VERSION"
    )
elif [[ " $MISSING " == *" mmcv "* ]]; then
    pip_install numpy ninja "mmengine>=0.10,<0.11" opencv-python
    if "$PY" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null \
        && command -v nvcc >/dev/null 2>&1; then
        export FORCE_CUDA=1
    fi
    log "building mmcv==$MMCV_VERSION with ops (first time: ~14 min on 2 cores)"
    MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
        pip_install --no-build-isolation "mmcv==$MMCV_VERSION"
fi

# The package, editable: from a wheelhouse without extras; else with the
# test and export extras, unless setup.cfg is unchanged since last time.
if [ -n "$WHEELHOUSE" ]; then
    log "installing mmseg-repvgg (editable) into $PY"
    pip_install --no-build-isolation -e "$REPO_ROOT"
else
    STAMP="$VENV/.mmseg_repvgg_setup"
    WANT="$(cat "$REPO_ROOT/setup.cfg" "$REPO_ROOT/pyproject.toml" | cksum) $REPO_ROOT"
    if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ] \
        || [ -n "$MISSING" ] \
        || ! "$PY" -c 'import importlib.util as u, sys; sys.exit(u.find_spec("mmseg_repvgg") is None)'; then
        log "installing mmseg-repvgg (editable) and its dependencies"
        pip_install --no-build-isolation -e "$REPO_ROOT[tests]"
        echo "$WANT" > "$STAMP"
    fi
fi
export PY REPO_ROOT
