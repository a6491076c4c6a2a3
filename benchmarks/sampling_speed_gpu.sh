#!/usr/bin/env bash
# Issue 20's GPU run as one script, for the next session that has a GPU (at most 540 s of device time):
#   1. the fast paths against their reference paths on the GPU (modulated conv grouped/scaled/auto in fp32 and bf16,
#      ASAP-Net's label lookup at the four paper sizes, SPN/AR static = CUDA-graph sampling vs cached vs naive);
#   2. PixelFolder / CIPS / StyleGAN2 at 256, batch 1 and 32, fp32 and bf16, eager; then with --compile cudagraphs
#      (batch 1 fp32 for the three: the latency targets; batch 32 bf16 for PixelFolder: its throughput target);
#   3. StyleNAT vs StyleGAN2 throughput, bf16, batch 32; neighborhood attention vs dense SDPA;
#   4. ASAP-Net vs pix2pixHD-style vs SPADE at the four ASAP-Net sizes, fp32 and bf16;
#   5. SPN / AR sampling: cached, naive and static (CUDA graph), identical draws under --deterministic.
# Every step runs under `timeout`, capped by what is left of the 540 s budget; a step that would get < 20 s is
# skipped. Each benchmark rewrites its results after every measured run, so a step cut short keeps what it measured.
# Results: benchmarks/results/*-<gpu>.json|md (copied to $OUT when set), logs in $OUT.
#
#   bash benchmarks/sampling_speed_gpu.sh
#
# Environment: PYTHON (default python3), OUT (a folder for logs and results), BUDGET (seconds, default 540).
# Runs from src/ without installing.
set -u
cd "$(dirname "$0")/.." || exit 2
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
OUTDIR=${OUT:-$(mktemp -d)}
BUDGET=${BUDGET:-540}
mkdir -p "$OUTDIR"
START=$(date +%s)
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv 2>&1 | tee "$OUTDIR/gpu.txt"

# step NAME SECONDS COMMAND...: run COMMAND under a time limit of SECONDS, or less when the budget is nearly spent.
step() {
    local name=$1 limit=$2
    shift 2
    local left=$((BUDGET - ($(date +%s) - START) - 5))
    if [ "$left" -lt 20 ]; then
        echo "== $name: skipped (${left}s of the budget left)" | tee -a "$OUTDIR/steps.txt"
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "== $name (limit ${limit}s)" | tee -a "$OUTDIR/steps.txt"
    local t0=$(date +%s)
    timeout "$limit" "$@" > "$OUTDIR/$name.log" 2>&1
    local rc=$?
    echo "   rc=$rc after $(( $(date +%s) - t0 ))s" | tee -a "$OUTDIR/steps.txt"
    tail -40 "$OUTDIR/$name.log"
}

step fastpath_equality 45 "$PY" benchmarks/fastpath_equality.py --device cuda --deterministic --repeats 5
step pixel_synthesis 100 "$PY" benchmarks/pixel_synthesis.py --device cuda --runs 256:1 256:32 --dtypes fp32 bf16
# Compiling costs about half a minute per model: batch 1 (the latency targets) for the three families, and batch 32
# bf16 (the throughput target) for PixelFolder only, so that both fit the budget.
step pixel_synthesis_cudagraphs_b1 120 "$PY" benchmarks/pixel_synthesis.py --device cuda --runs 256:1 \
    --dtypes fp32 --compile cudagraphs --name pixel_synthesis_cudagraphs_b1
step pixel_synthesis_cudagraphs_b32 60 "$PY" benchmarks/pixel_synthesis.py --device cuda --runs 256:32 \
    --dtypes bf16 --families pixelfolder --compile cudagraphs --name pixel_synthesis_cudagraphs_b32
step stylenat 50 "$PY" benchmarks/stylenat.py --device cuda --runs 256:32 --dtypes bf16 \
    --families stylenat stylegan2
step neighborhood_attention 60 "$PY" benchmarks/neighborhood_attention.py --device cuda --sizes 32 64 128 256
step translation 60 "$PY" benchmarks/translation.py --device cuda --sizes 512x512 1024x1024 256x512 1024x2048 \
    --dtypes fp32 bf16 --max-gmacs 1e9 --warmup 3 --repeats 10
step spn 45 "$PY" benchmarks/spn.py --device cuda --deterministic --parts sampling \
    --sample-presets spn-tiny-32 ar-tiny-32 --sample-configs spn:64:4 spn:256:8

cp benchmarks/results/*-h[0-9]*.* benchmarks/results/*-a[0-9]*.* benchmarks/results/*-cuda.* "$OUTDIR"/ 2>/dev/null
echo "total $(( $(date +%s) - START ))s; logs and results in $OUTDIR" | tee -a "$OUTDIR/steps.txt"
