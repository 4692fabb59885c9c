#!/usr/bin/env bash
# The GPU check in one command, under 11 minutes on one CUDA GPU:
#
#   bash bench/gpu_check.sh            # on a machine with a CUDA GPU and this project installed
#   GPU_CHECK_SMOKE=1 bash bench/gpu_check.sh   # the same steps on the CPU with tiny sizes (checks the script)
#
# Steps, each with its own time limit (a failed or timed-out step is reported and the others still run):
#   1. pytest -m gpu                      the CUDA tests (optimiser, renderer, seed trial, plateau, precision)
#   2. bench/raster.py --device cuda      the renderer against the dense reference
#   3. bench/speed.py --only-whole        whole sketches: fast run start to end, paper best-of-3 from timed
#                                         steps (and run whole on CUDA), against the fp32 floor and the
#                                         original's loop
#   4. bench/precision_reach.py           loss reached in fp16 and in bf16 against fp32, on CUDA
#   5. bench/compile.py --device cuda     the compiled encoder step (issue 27): eager vs compiled in fp32 and
#                                         fp16, inductor's default mode and reduce-overhead (CUDA graphs),
#                                         cold compile and warm-cache start
# Results: bench/results/*_cuda.json (and a log, gpu_check_cuda.log); with $OUT set (the device tool) they are
# copied there too. Models are random (no weights can be downloaded on such a machine); see bench/speed.py.
#
# Packages the GPU machine lacks (open_clip_torch, ftfy, wcwidth, ...) can be carried as wheels in .whl/;
# they are installed into /tmp/site first (see the README's GPU section).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
SMOKE=${GPU_CHECK_SMOKE:-0}
RESULTS=${GPU_CHECK_RESULTS:-bench/results}
mkdir -p "$RESULTS"

if [ -d .whl ] && ! "$PY" -c "import open_clip" >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi

if [ "$SMOKE" = "1" ]; then
    DEV=cpu; QUICK=--quick; SUFFIX=cpu_smoke
else
    DEV=cuda; QUICK=; SUFFIX=cuda
    if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
        echo "gpu_check: this Python's torch sees no CUDA GPU; run it on a machine with one (or GPU_CHECK_SMOKE=1" \
             "to check the script on the CPU)" >&2
        exit 2
    fi
fi
LOG="$RESULTS/gpu_check_$SUFFIX.log"
: > "$LOG"
export PYTHONUNBUFFERED=1
FAILED=()

step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2; shift 2
    local t0=$SECONDS
    echo "== $name (limit ${limit}s): $*" | tee -a "$LOG"
    timeout "$limit" "$@" 2>&1 | grep -v "No pretrained weights loaded" | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc after $((SECONDS - t0))s" | tee -a "$LOG"
    [ "$rc" -eq 0 ] || FAILED+=("$name (exit $rc)")
}

if [ "$SMOKE" = "1" ]; then
    step "pytest -m gpu" 300 "$PY" -m pytest -m gpu -q -p no:cacheprovider tests/engine/optimize/test_speedups.py
    step "raster" 300 "$PY" bench/raster.py --device cpu --quick --threads 1 --out "$RESULTS/raster_$SUFFIX.json"
    step "speed, whole sketches" 300 "$PY" bench/speed.py --devices cpu --quick --only-whole --threads 1 \
        --results "$RESULTS"
    step "precision reach" 300 "$PY" bench/precision_reach.py --quick --pictures 1 --iterations 3 --threads 1 \
        --out "$RESULTS/precision_reach_$SUFFIX.json"
    step "compiled step" 300 "$PY" bench/compile.py --quick --skip-whole --fp32-only --shapes trial --threads 1 \
        --results "$RESULTS"
else
    step "pytest -m gpu" 120 "$PY" -m pytest -m gpu -q -p no:cacheprovider
    step "raster" 60 "$PY" bench/raster.py --device cuda --repeats 10 --dense-repeats 1 \
        --out "$RESULTS/raster_cuda.json"
    step "speed, whole sketches" 180 "$PY" bench/speed.py --devices cuda --only-whole --measure 10 --results "$RESULTS"
    step "precision reach fp16" 60 "$PY" bench/precision_reach.py --device cuda --mode fp16 --iterations 200 \
        --pictures 2 --out "$RESULTS/precision_reach_cuda_fp16.json"
    step "precision reach bf16" 60 "$PY" bench/precision_reach.py --device cuda --mode bf16 --iterations 200 \
        --pictures 2 --out "$RESULTS/precision_reach_cuda.json"
    step "compiled step" 200 "$PY" bench/compile.py --device cuda --skip-whole --modes default reduce-overhead \
        --precisions fp16 --shapes fast --results "$RESULTS"
fi

if [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ]; then
    cp "$RESULTS"/*_"$SUFFIX"*.json "$RESULTS"/speed_"$DEV"*.json "$LOG" "$OUT"/ 2>/dev/null || true
fi
if [ ${#FAILED[@]} -gt 0 ]; then
    echo "gpu_check: FAILED: ${FAILED[*]} (log: $LOG)" >&2
    exit 1
fi
echo "gpu_check: all steps passed in ${SECONDS}s (log: $LOG)"
