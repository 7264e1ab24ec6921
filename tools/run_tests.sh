#!/usr/bin/env bash
# The project's test command: set up (or reuse) the environment, lint, test.
#   bash tools/run_tests.sh [pytest args...]
# Extra arguments go to pytest (e.g. -k reparam).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$REPO_ROOT"

echo "[tests] lint: flake8, isort, yapf"
"$PY" -m flake8 mmseg_repvgg tools tests configs
"$PY" -m isort --check-only --diff mmseg_repvgg tools tests configs
"$PY" -m yapf --diff --recursive mmseg_repvgg tools tests configs

echo "[tests] pytest"
# -n 2: the suite is sized for two cores; --durations shows what is slow.
exec "$PY" -m pytest -n "${PYTEST_WORKERS:-2}" --durations=15 "$@"
