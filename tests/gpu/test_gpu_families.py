"""Every family's tiny preset on the tier's device, through the CLI: train (fp32 and bf16), snapshot, resume, sample
or translate, evaluate the default metric with small counts, export to ONNX and check it in ONNX Runtime."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

from _tier import BATCH, RESUME_STEPS, STEPS, Data, need_inception, onnx_missing, only_run, run_cli, train_args

pytestmark = pytest.mark.cuda

#: preset -> task (the data it trains on). The distilled student is added below with its teacher.
FAMILIES = {
    "stylegan2-tiny32": "unconditional", "pixelfolder-tiny32": "unconditional", "cips-tiny32": "unconditional",
    "stylenat-tiny32": "unconditional",
    "spn-tiny-32": "likelihood", "ar-tiny-32": "likelihood",
    "conv-translator-tiny32": "paired", "asapnet-tiny32": "paired",
    "cyclegan-tiny32": "unpaired",
    "stylegan2-tiny32-student": "distill",
}
TEACHER = "stylegan2-tiny32"
#: One export per family that exports (likelihood models do not; the condensed student is in test_gpu_compress).
EXPORTED = ["stylegan2-tiny32", "conv-translator-tiny32", "cyclegan-tiny32", "stylegan2-tiny32-student"]


@pytest.fixture(scope="module")
def run_of(trained: Callable[..., Path]) -> Callable[[str], Path]:
    """``run_of(preset)``: the session's fp32 run of ``preset`` (the student's with the teacher's run)."""

    def get(preset: str) -> Path:
        task = FAMILIES[preset]
        if task == "distill":
            return trained(preset, "unconditional", "--hparam", f"teacher={trained(TEACHER, 'unconditional')}")
        return trained(preset, task)

    return get


def stats(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines() if line.strip()]


def execution(run: Path) -> dict:
    return json.loads((run / "training_options.json").read_text())["run"]["execution"]


def assert_finite_losses(rows: list[dict]) -> None:
    losses = {k: v for row in rows for k, v in row.items() if k.startswith(("loss", "nll", "l1", "bpd"))}
    assert losses, f"no loss in stats.jsonl: {sorted(rows[-1])}"
    assert all(math.isfinite(v) for v in losses.values()), losses


def assert_images(folder: Path, names: list[str], size: tuple[int, int] = (32, 32)) -> None:
    """``folder`` holds these PNGs at ``size``, and they are not constant (a NaN or dead output is)."""
    for name in names:
        img = np.asarray(Image.open(folder / name).convert("RGB"))
        assert img.shape[:2] == size, (name, img.shape)
        assert img.std() > 0.5, f"{name} is constant ({img.reshape(-1, 3)[0]}): a NaN or dead output"


def sample(run: Path, preset: str, data: Data, outdir: Path, dev: str, *extra: str) -> None:
    """``generate`` (generators, likelihood models) or ``translate`` (translators) 4 images from ``run``."""
    task = FAMILIES[preset]
    if task in ("paired", "unpaired"):
        inputs = outdir.parent / f"{outdir.name}-inputs"
        inputs.mkdir()
        src = sorted(data.labels.iterdir()) if task == "paired" else sorted((data.unpaired / "trainA").iterdir())
        for f in src[:4]:
            shutil.copy(f, inputs / f.name)
        run_cli("translate", "--network", run, "--input", inputs, "--outdir", outdir, "--device", dev, *extra)
        assert_images(outdir, [f.name for f in src[:4]])
    else:
        run_cli("generate", "--network", run, "--seeds", "0-3", "--outdir", outdir, "--device", dev, *extra)
        assert_images(outdir, [f"seed{i:04d}.png" for i in range(4)])


@pytest.mark.parametrize("preset", list(FAMILIES))
def test_trains_snapshots_and_resumes(preset: str, run_of: Callable[[str], Path], device: torch.device,
                                      dev: str) -> None:
    from leangen.runs import latest_snapshot

    run = run_of(preset)
    first = latest_snapshot(run)
    assert first is not None and stats(run)[-1]["step"] == STEPS
    assert execution(run)["device"] == str(device) and execution(run)["precision"] == "fp32"
    run_cli("train", "--resume", run, "--steps", str(STEPS + RESUME_STEPS), "--device", dev, "--no-progress")
    rows = stats(run)
    # step and images shown both continue from the snapshot (a resume that restarts either counter fails here)
    assert rows[-1]["step"] == STEPS + RESUME_STEPS
    assert rows[-1]["kimg"] == pytest.approx((STEPS + RESUME_STEPS) * BATCH / 1000)
    assert latest_snapshot(run) not in (None, first)
    resumed = json.loads((run / "training_options.json").read_text())["run"]
    assert Path(resumed["resumed_from"]).name == first.name and resumed["execution"]["device"] == str(device)
    assert_finite_losses(rows)


@pytest.mark.parametrize("preset", list(FAMILIES))
def test_samples_or_translates(preset: str, run_of: Callable[[str], Path], data: Data, tmp_path: Path,
                               dev: str) -> None:
    sample(run_of(preset), preset, data, tmp_path / "out", dev)


@pytest.mark.parametrize("preset", list(FAMILIES))
def test_trains_and_samples_in_bf16(preset: str, run_of: Callable[[str], Path], data: Data, tmp_path: Path,
                                    device: torch.device, dev: str) -> None:
    task = FAMILIES[preset]
    extra = ["--precision", "bf16"]
    if task == "distill":
        extra += ["--hparam", f"teacher={run_of(TEACHER)}"]
    source = data.source("unconditional" if task == "distill" else task)
    run_cli(*train_args(preset, source, tmp_path / "runs", dev, STEPS, *extra))
    run = only_run(tmp_path / "runs")
    assert execution(run)["precision"] == "bf16" and execution(run)["device"] == str(device)
    assert stats(run)[-1]["step"] == STEPS
    assert_finite_losses(stats(run))
    sample(run, preset, data, tmp_path / "out", dev, "--precision", "bf16")


def eval_records(output: str) -> dict[str, dict]:
    """``leangen eval --json`` output -> {metric name: record}."""
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return {r["metric"]: r for r in records}


@pytest.mark.parametrize("preset", list(FAMILIES))
def test_evaluates_its_default_metric(preset: str, run_of: Callable[[str], Path], data: Data, device: torch.device,
                                      dev: str) -> None:
    task, run = FAMILIES[preset], run_of(preset)
    if task == "unpaired":
        pytest.skip("the unpaired task has no default metric (nothing scores a translation without pairs)")
    base = ["eval", "--network", run, "--device", dev, "--json", "--batch", "16"]
    if task == "distill":  # a student is scored against its teacher: no Inception needed
        out = eval_records(run_cli(*base, "--teacher", run_of(TEACHER), "--metrics", "teacher_psnr8"))
        value = out["teacher_psnr8"]["results"]["teacher_psnr8"]
        assert math.isfinite(value) and value > 0
    elif task == "unconditional":  # fid2k's protocol at a small count
        n = 64 if device.type == "cuda" else 16
        out = eval_records(run_cli(*base, "--data", data.zip, "--metrics", f"fid{n}", *need_inception()))
        value = out[f"fid{n}"]["results"][f"fid{n}"]
        assert math.isfinite(value) and value > 0
    else:  # the kind's default: bpd (likelihood) or psnr,l1 (paired), on the validation split
        out = eval_records(run_cli(*base, "--data", data.source(task)))
        expected = {"likelihood": {"bpd"}, "paired": {"psnr", "l1"}}[task]
        assert set(out) == expected, sorted(out)
        for name in expected:
            value = out[name]["results"][name]
            assert math.isfinite(value) and value > 0, (name, value)
        if task == "likelihood":
            assert out["bpd"]["results"]["bpd"] < 9  # random 8-bit pixels cost 8 bits; a broken model more
    for record in out.values():
        assert record["execution"]["device"] == str(device)


@pytest.mark.parametrize("preset", EXPORTED)
def test_onnx_export_is_checked_in_onnx_runtime(preset: str, run_of: Callable[[str], Path], tmp_path: Path,
                                                dev: str) -> None:
    if onnx_missing():
        pytest.skip(f"ONNX export needs the export extras; {onnx_missing()} is not installed here")
    out = run_cli("export", "--network", run_of(preset), "--out", tmp_path / "model.onnx", "--device", dev)
    assert "check: ONNX Runtime matches PyTorch" in out, out
    assert (tmp_path / "model.onnx").stat().st_size > 10_000
