#!/usr/bin/env bash
# The GPU check in one command: set-up from wheelhouse/ (filled by
# bash tools/gpu_wheelhouse.sh), the CUDA tests, tools/benchmark.py and
# tools/train_benchmark.py, one report (DIR/gpu_check.md; default DIR: $OUT,
# else work_dirs/gpu_check). Each step gets what is left of the budget
# (default 480 s on cuda, none on cpu). See docs/benchmark.md, "GPU".
#   bash tools/gpu_check.sh [--budget SECONDS] [--out DIR] [--wheelhouse DIR]
# Its dry run on a CPU (tiny models and shapes; the CUDA tests skipped):
#   bash tools/gpu_check.sh --device cpu --skip-install --out DIR
# Exit status 1 when a step failed (the CUDA tests also when the budget
# stopped them), 2 on bad input (one error: line, nothing written).
set -uo pipefail
START=$SECONDS

fail() { echo "error: $*" >&2; exit 2; }

DEVICE=cuda
OUT_DIR="${OUT:-work_dirs/gpu_check}"
WHEELHOUSE=
BUDGET=
SKIP_INSTALL=
PY="${PYTHON:-python3}"
while [ $# -gt 0 ]; do
    case "$1" in
        --device | --out | --budget | --wheelhouse)
            [ $# -ge 2 ] || fail "$1 needs a value"
            case "$1" in
                --device) DEVICE=$2 ;;
                --out) OUT_DIR=$2 ;;
                --budget) BUDGET=$2 ;;
                --wheelhouse) WHEELHOUSE=$2 ;;
            esac
            shift 2 ;;
        --skip-install) SKIP_INSTALL=1; shift ;;
        -h | --help) sed -n '2,/^set /{/^set /d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) fail "unknown argument $1 (bash tools/gpu_check.sh --help)" ;;
    esac
done

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WHEELHOUSE="${WHEELHOUSE:-$REPO_ROOT/wheelhouse}"
case "$DEVICE" in
    cuda) BUDGET="${BUDGET:-480}" ;;
    cpu) ;;
    *) fail "--device $DEVICE: choose cuda or cpu" ;;
esac
if [ -n "$BUDGET" ] && ! [[ "$BUDGET" =~ ^[1-9][0-9]*$ ]]; then
    fail "--budget $BUDGET: a whole number of seconds, at least 1"
fi
[ ! -e "$OUT_DIR" ] || [ -d "$OUT_DIR" ] || fail "--out $OUT_DIR is not a folder"
if [ -z "$SKIP_INSTALL" ] && [ ! -d "$WHEELHOUSE" ]; then
    fail "no wheelhouse at $WHEELHOUSE: fill it with" \
        "bash tools/gpu_wheelhouse.sh where pip reaches an index, or pass" \
        "--skip-install where the packages are installed"
fi
if [ "$DEVICE" = cuda ] \
    && ! "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' \
        2>/dev/null; then
    fail "--device cuda: $PY has no torch that sees a CUDA device; the dry" \
        "run is --device cpu --skip-install"
fi

mkdir -p "$OUT_DIR" || fail "--out $OUT_DIR: cannot make the folder"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
WHEELHOUSE="$(cd "$WHEELHOUSE" 2>/dev/null && pwd || echo "$WHEELHOUSE")"
cd "$REPO_ROOT"
# The working tree's package, installed or not.
export PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
REPORT="$OUT_DIR/gpu_check.md"
LOG="$OUT_DIR/gpu_check.log"
SCRATCH="$(mktemp -d)"
trap 'rm -rf "$SCRATCH"' EXIT
: > "$LOG"
STEPS=()
FAILED=0

# The forms the GPU runs fast; on the CPU they name what needs CUDA.
FORMS=(fused reduced reduced_cl reduced_lowres reduced_cl_lowres
    reduced_graph reduced_cl_lowres_graph)
if [ "$DEVICE" = cuda ]; then
    MODELS=(configs/pspnet_repvgg_b1g2_fast_cityscapes.py
        configs/pspnet_repvgg_b2_fast_cityscapes.py)
    BASELINES=()  # tools/benchmark.py's own: mmseg's R50-D8 and R101-D8
    SIZES=("1024 2048" "512 1024")
    BENCH_ARGS=(--warmup 3 --runs 10)
    TRAIN_ARGS=(--warmup 2 --iters 6)  # the six paper configs
else
    # The toy config and mmseg's PSPNet R18-D8, shrunk: measured in seconds.
    cat > "$SCRATCH/toy_tiny.py" <<EOF
_base_ = ['$REPO_ROOT/configs/pspnet_repvgg_toy_cityscapes.py']
model = dict(
    data_preprocessor=dict(size=(32, 64)),
    backbone=dict(arch=dict(num_blocks=(1, 1, 1, 1), width_factor=(0.25, ) * 4)),
    decode_head=dict(in_channels=128, channels=8),
    auxiliary_head=dict(in_channels=64, channels=8))
EOF
    cat > "$SCRATCH/r18_tiny.py" <<EOF
_base_ = ['mmseg::pspnet/pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py']
model = dict(
    data_preprocessor=dict(size=(32, 64)),
    backbone=dict(stem_channels=16, base_channels=16),
    decode_head=dict(in_channels=128, channels=8),
    auxiliary_head=dict(in_channels=64, channels=8))
EOF
    MODELS=("$SCRATCH/toy_tiny.py")
    BASELINES=(--baselines "$SCRATCH/r18_tiny.py")
    SIZES=("32 64")
    BENCH_ARGS=(--warmup 1 --runs 2 --matmul-size 256 --conv-shape 16 32 64)
    TRAIN_ARGS=("toy-tiny=$SCRATCH/toy_tiny.py"
        "R18-D8-tiny=$SCRATCH/r18_tiny.py" --crop 32 64 --warmup 1 --iters 1
        --infer-shape 32 64 --infer-runs 1 --dry-run)
fi

say() { echo "[gpu-check] $*" >&2; }

# run_step NAME COMMAND...: output to the log and $SCRATCH/step.out, within
# what is left of the budget (less a reserve for the report), else skipped;
# returns the command's status; a failure (not the budget's stop) sets FAILED.
run_step() {
    local name=$1 began=$SECONDS rc limit=() result=ok
    shift
    : > "$SCRATCH/step.out"
    if [ -n "$BUDGET" ]; then
        local left=$((BUDGET - (SECONDS - START) - 15))
        if [ "$left" -lt 30 ]; then
            STEPS+=("| $name | skipped: the budget (--budget $BUDGET) is spent | |")
            say "$name: skipped, the budget is spent"
            return 124
        fi
        # SIGINT first: the tools keep what they measured so far.
        limit=(timeout -s INT -k 30 "$left")
    fi
    say "$name ..."
    echo "===== $name: $*" >> "$LOG"
    "${limit[@]}" "$@" > "$SCRATCH/step.out" 2>&1
    rc=$?
    cat "$SCRATCH/step.out" >> "$LOG"
    if [ ${#limit[@]} -gt 0 ] && [[ $rc == 124 || $rc == 137 ]]; then
        result="stopped by the budget (--budget $BUDGET)"
    elif [ "$rc" -ne 0 ]; then
        result="failed (exit $rc)"
        FAILED=1
    fi
    STEPS+=("| $name | $result | $((SECONDS - began)) |")
    say "$name: $result ($((SECONDS - began)) s)"
    return "$rc"
}

# section TITLE FILE: a report section with FILE's text (or a note).
section() {
    printf '\n## %s\n\n' "$1" >> "$REPORT"
    if [ -s "$2" ]; then
        cat "$2" >> "$REPORT"
    else
        echo "(not run, or no output: see the steps below and gpu_check.log)" >> "$REPORT"
    fi
}

TORCH='import torch; print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, " + (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"))'
cat > "$REPORT" <<EOF
# GPU check: $DEVICE

- started $(date -u '+%Y-%m-%d %H:%M UTC'), budget: ${BUDGET:-no limit}${BUDGET:+ s}
- $("$PY" -c "$TORCH" 2>&1 | tail -n 1)
- tools/benchmark.py ran with NVIDIA_TF32_OVERRIDE=0: its fp32 is true fp32
- every step's output: gpu_check.log; how to read the ratios: docs/benchmark.md, "GPU"
EOF

if [ -z "$SKIP_INSTALL" ] && ! run_step set-up env WHEELHOUSE="$WHEELHOUSE" \
    PYTHON="$PY" bash tools/setup_env.sh; then
    FAILED=1
    tail -n 20 "$SCRATCH/step.out" > "$SCRATCH/setup.tail"
    section "Set-up did not finish: WHEELHOUSE=DIR tools/setup_env.sh" \
        "$SCRATCH/setup.tail"
else
    run_step "CUDA tests" "$PY" -m pytest -m cuda -v -rfEs --durations=10 \
        || FAILED=1
    # The short summary (skips with their reason, failures), or the last line.
    summary=$(sed -n '/short test summary info/,$p' "$SCRATCH/step.out")
    summary=${summary:-$(tail -n 1 "$SCRATCH/step.out")}
    [ -z "$summary" ] || printf '```\n%s\n```\n' "$summary" > "$SCRATCH/tests.md"
    section "CUDA tests: python -m pytest -m cuda" "$SCRATCH/tests.md"

    for size in "${SIZES[@]}"; do
        read -r height width <<< "$size"
        dir="$OUT_DIR/benchmark_${height}x${width}"
        # True fp32 for the fp32 forms and the accuracy columns' reference.
        run_step "benchmark ${height}x${width}" env NVIDIA_TF32_OVERRIDE=0 \
            "$PY" tools/benchmark.py "${MODELS[@]}" "${BASELINES[@]}" \
            --forms "${FORMS[@]}" --baseline-forms "${FORMS[@]}" \
            --profile-forms --shape "$height" "$width" --device "$DEVICE" \
            "${BENCH_ARGS[@]}" --out-dir "$dir"
        section "Inference at ${height}x${width}: tools/benchmark.py" \
            "$dir/benchmark.md"
        # A form that failed is a failure, though the tool measures on.
        count=$(grep -c '"status": "failed"' "$dir/benchmark.json" 2>/dev/null)
        if [ "${count:-0}" -gt 0 ]; then
            FAILED=1
            STEPS+=("| benchmark ${height}x${width} | $count forms failed (see its notes) | |")
        fi
    done

    run_step "training benchmark" "$PY" tools/train_benchmark.py \
        "${TRAIN_ARGS[@]}" --device "$DEVICE" \
        --out-dir "$OUT_DIR/train_benchmark"
    section "Training: tools/train_benchmark.py" \
        "$OUT_DIR/train_benchmark/train_benchmark.md"
fi

{
    printf '\n## Steps (%s s in all)\n\n| step | result | seconds |\n| --- | --- | --- |\n' \
        "$((SECONDS - START))"
    printf '%s\n' "${STEPS[@]}"
} >> "$REPORT"
cat "$REPORT"
say "wrote $REPORT"
exit "$FAILED"
