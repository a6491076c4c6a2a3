"""benchmarks/training_speed.py (issue 21): one preset measured in-process on the CPU gives a consistent row, and
its Markdown renders every row, including those of presets that timed out."""
from __future__ import annotations

import argparse
import importlib.util
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_script():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("training_speed", ROOT / "benchmarks" / "training_speed.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_measure_one_tiny_preset() -> None:
    bench = load_script()
    args = argparse.Namespace(device="cpu", precision="fp32", tf32=None, deterministic=False, batch=4, steps=2,
                              warmup=1)
    row = bench.measure("resnet-tiny32", args)
    assert row["status"] == "ok" and row["batch"] == 4 and row["resolution"] == "32x32" and row["finite"]
    # sec/kimg and img/s are two views of one timing of steps * batch images
    assert math.isclose(row["sec_per_kimg"] * row["img_per_sec"], 1000, rel_tol=1e-9)
    assert math.isclose(row["img_per_sec"], 2 * 4 / row["seconds"], rel_tol=1e-9)
    assert row["peak_mem_gb"] > 0 and {"loss_D", "l1"} <= set(row["stats"])
    env = {"device_name": "cpu", "device": "cpu", "torch_version": "x", "date": "d", "threads": 1}
    md = bench.markdown({"environment": env, "setting": {"steps": 2, "warmup": 1, "timeout": 5.0},
                         "rows": [row, {"preset": "stylegan2-256", "precision": "bf16", "status": "timeout after 5 s"}]})
    assert "| resnet-tiny32 | paired | 32x32 | 4 |" in md and "| stylegan2-256 |" in md and "timeout after 5 s" in md
