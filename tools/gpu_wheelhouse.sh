#!/usr/bin/env bash
# Fill a wheelhouse for a CUDA machine without a package index, where pip
# reaches one: the CPython 3.12 x86-64 wheels of tools/gpu_wheelhouse.txt
# and mmcv's source; DEST is replaced only when every download succeeded.
# There bash tools/gpu_check.sh (or WHEELHOUSE=DIR tools/setup_env.sh) uses it.
#   bash tools/gpu_wheelhouse.sh [DEST]      (default: <repo>/wheelhouse)
#   PYTHON=...  whose pip downloads (default: the project's .venv, else
#               python3); it needs setuptools < 82 (mmcv's setup.py).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${1:-$REPO_ROOT/wheelhouse}"
LIST="$REPO_ROOT/tools/gpu_wheelhouse.txt"
if [ -z "${PYTHON:-}" ]; then
    PYTHON=python3
    [ -x "$REPO_ROOT/.venv/bin/python" ] && PYTHON="$REPO_ROOT/.venv/bin/python"
fi
MAX_MIB=32  # small enough to copy along with the working tree

fail() { echo "error: $*" >&2; exit 2; }

"$PYTHON" -c 'import pkg_resources' 2>/dev/null \
    || fail "$PYTHON has no pkg_resources (no setuptools, or >= 82); pass" \
        "PYTHON=<an interpreter with setuptools<82>, e.g. the project's" \
        ".venv from tools/setup_env.sh"

# name==version lines, comments and blanks dropped; mmcv is the one sdist.
mapfile -t PINS < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$LIST" | grep .)
WHEELS=()
SDIST=
for pin in "${PINS[@]}"; do
    if [[ "$pin" == mmcv==* ]]; then SDIST="$pin"; else WHEELS+=("$pin"); fi
done
[ -n "$SDIST" ] || fail "$LIST names no mmcv==VERSION"

STAGE="$(mktemp -d "${DEST%/}.partial.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT
pip_download() {
    "$PYTHON" -m pip download --disable-pip-version-check -q --no-deps \
        -d "$STAGE" "$@"
}
echo "[wheelhouse] ${#WHEELS[@]} wheels for CPython 3.12 x86-64" >&2
pip_download --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    "${WHEELS[@]}"
echo "[wheelhouse] $SDIST source (built on the GPU machine)" >&2
# No build isolation: pip runs mmcv's setup.py for its metadata, and an
# isolated build would take the newest setuptools, without pkg_resources.
pip_download --no-binary=:all: --no-build-isolation "$SDIST"
cp "$LIST" "$STAGE/"

KIB="$(du -sk "$STAGE" | cut -f1)"
if [ "$KIB" -gt $((MAX_MIB * 1024)) ]; then
    fail "the wheelhouse would take $((KIB / 1024)) MiB, over $MAX_MIB MiB;" \
        "trim tools/gpu_wheelhouse.txt"
fi
rm -rf "$DEST"
mv "$STAGE" "$DEST"
trap - EXIT
ls -1 "$DEST" >&2
echo "[wheelhouse] $DEST: $(ls -1 "$DEST" | wc -l) files," \
    "$(awk -v k="$KIB" 'BEGIN { printf "%.1f", k / 1024 }') MiB"
