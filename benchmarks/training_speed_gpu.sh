#!/usr/bin/env bash
# Issue 21's GPU run as one script, for the next session that has a GPU (about 9 minutes of device time):
#   1. the sync-free check: the training steps between ticks under torch.cuda.set_sync_debug_mode("error");
#   2. training speed: the paper presets in bf16 and stylegan2-256 / the tiny presets in fp32, each preset in its
#      own process under a time limit (a slow or failing preset costs only its row);
#   3. the results land in benchmarks/results/training_speed-<gpu>[-bf16].json|md (copied to $OUT when set).
#
#   bash benchmarks/training_speed_gpu.sh
#
# Environment: PYTHON (default python3), OUT (a folder to copy logs and results to). Runs from src/ without installing.
set -u
cd "$(dirname "$0")/.." || exit 2
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PY" -c "import pytest" 2>/dev/null && [ -d .gpu-deps ]; then
    export PYTHONPATH="$PYTHONPATH:$PWD/.gpu-deps"
fi
OUTDIR=${OUT:-$(mktemp -d)}
mkdir -p "$OUTDIR"
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv 2>&1 | tee "$OUTDIR/gpu.txt"

LEANGEN_TEST_DEVICE=cuda timeout 150 "$PY" -m pytest -q -p no:cacheprovider tests/gpu/test_gpu_sync_free.py -rs \
    2>&1 | tail -30 | tee "$OUTDIR/sync_free.txt"

timeout 200 "$PY" benchmarks/training_speed.py --device cuda --precision bf16 --timeout 45 \
    --presets stylegan2-256,pixelfolder-256,cips-256,stylenat-256,asapnet-cityscapes-256x512,spn-celebahq256-5bit,resnet9-256,cyclegan-resnet9-256 \
    2>&1 | tee "$OUTDIR/speed_bf16.txt"
timeout 150 "$PY" benchmarks/training_speed.py --device cuda --precision fp32 --timeout 30 \
    --presets stylegan2-256,stylegan2-tiny32,pixelfolder-tiny32,stylenat-tiny32,spn-tiny-32,cyclegan-tiny32 \
    2>&1 | tee "$OUTDIR/speed_fp32.txt"
cp benchmarks/results/training_speed-* "$OUTDIR"/ 2>/dev/null
echo "logs and results in $OUTDIR"
