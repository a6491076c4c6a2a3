"""The checker the prepared GPU run starts with (``benchmarks/fastpath_equality.py``) and the modulated-conv path
benchmark (``benchmarks/modconv_paths.py``) run in-process on tiny presets: the GPU session gets no crash, and their
rows say what they measured (paths equal, every path timed)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def load(name: str):  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_fastpath_equality_tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bench = load("fastpath_equality")
    import _common

    monkeypatch.setattr(_common, "RESULTS", tmp_path)
    payload = bench.main(["--device", "cpu", "--tiny", "--repeats", "1", "--batches", "2"])
    assert {r["model"] for r in payload["modconv"]} == {"stylegan2-tiny32", "pixelfolder-tiny32"}
    for r in payload["modconv"]:
        bound = 1e-4 if r["precision"] == "fp32" else 0.25  # bf16: a few ulps of bf16 through a whole network
        assert r["scaled_vs_grouped"] < bound and r["auto_vs_grouped"] < bound and r["scaled_ms"] > 0
    assert payload["asapnet"][0]["lookup_vs_concat"] < 1e-5
    assert all(r["static_identical"] and r["cached_identical"] for r in payload["sampling"])
    md = (tmp_path / "fastpath_equality-cpu.md").read_text()
    assert "| stylegan2-tiny32 | 2 | bf16 |" in md and "| asapnet-tiny32 |" in md and "| ar-tiny-32 |" in md


def test_modconv_paths_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    bench = load("modconv_paths")
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # keep the test's thread setting
    rows = bench.measure(["stylegan2-tiny32"], 2, "fp32", torch.device("cpu"), 0, 1, None)
    assert [r["path"] for r in rows] == ["grouped", "scaled", "auto"]
    assert [r["before"] for r in rows] == [False, True, False]  # StyleGAN2 ran the scaled path before the switch
    assert all(r["latency_ms"] > 0 for r in rows) and next(r for r in rows if r["before"])["vs_before"] == 1.0
    assert bench.before_path("pixelfolder", 1) == "grouped" and bench.before_path("pixelfolder", 4) == "scaled"
