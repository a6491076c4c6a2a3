"""Exact resume across processes: a run killed (SIGKILL) after a snapshot and resumed by a fresh ``leangen train``
process ends bit-identical to an uninterrupted run, in one process and at world size 2 over gloo (torchrun).

In-process resume (tests/test_train.py) cannot see state that lives only in the process: module-level caches, RNG
streams seeded at import, ``torch`` global settings. A new interpreter can.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from leangen import runs as ckpt
from test_train import TINY_ARGS, write_pngs

pytestmark = pytest.mark.slow

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
LAUNCH_TIMEOUT = 600  # generous: only a hung process should reach it on a loaded machine


def train_args(data: Path, outdir: Path, steps: int) -> list[str]:
    """A tiny StyleGAN2 run with every stochastic training feature on; a snapshot every 2 steps."""
    return ["train", "--preset", "stylegan2-tiny32", "--data", str(data), "--outdir", str(outdir), "--steps",
            str(steps), "--batch", "4", "--tick", "0.008", "--snap", "1", "--grid", "4", "--device", "cpu",
            "--no-progress", "--mixing", "0.9", "--pl-weight", "2", "--mirror", "--diffaugment",
            "color,translation,cutout", "--metrics", "none", *TINY_ARGS]


def run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT, env=ENV)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def only_run(outdir: Path) -> Path:
    (run_dir,) = list(outdir.iterdir())
    return run_dir


def assert_same_final_state(a: Path, b: Path, steps: int) -> None:
    """Weights of every saved module, optimizer moments and RNG states of the last snapshots are bit-identical."""
    sa, sb = ckpt.latest_snapshot(a), ckpt.latest_snapshot(b)
    assert sa is not None and sb is not None
    state_a, state_b = ckpt.load_state(sa), ckpt.load_state(sb)
    assert state_a["step"] == state_b["step"] == steps
    for role in ("G", "D", "G_ema"):
        wa = load_file(str(sa / role / "model.safetensors"))
        wb = load_file(str(sb / role / "model.safetensors"))
        assert wa.keys() == wb.keys()
        assert [k for k in wa if not torch.equal(wa[k], wb[k])] == [], role
    for name in ("G", "D"):
        oa, ob = state_a["optimizers"][name]["state"], state_b["optimizers"][name]["state"]
        assert oa.keys() == ob.keys()
        for k in oa:
            assert all(torch.equal(oa[k][m], ob[k][m]) for m in oa[k]), (name, k)
    assert len(state_a["rng"]) == len(state_b["rng"])
    for ra, rb in zip(state_a["rng"], state_b["rng"]):
        assert torch.equal(ra["torch"], rb["torch"])


def reached_step(outdir: Path, step: int) -> bool:
    """Whether the run under ``outdir`` has a complete snapshot at ``step`` or later (snapshots appear atomically;
    one pruned while being read is simply not counted)."""
    for run_dir in outdir.glob("*"):
        for snap in ckpt.list_snapshots(run_dir)[-1:]:
            try:
                return ckpt.load_state(snap)["step"] >= step
            except (OSError, RuntimeError, KeyError):
                return False
    return False


def test_killed_run_resumed_by_a_new_process_is_bit_identical(tmp_path: Path) -> None:
    data = write_pngs(tmp_path / "pngs", n=10)  # not a multiple of the batch: batches span epochs
    leangen = [sys.executable, "-m", "leangen"]
    run([*leangen, *train_args(data, tmp_path / "straight", 6)])
    # the same run, killed without warning once its step-2 snapshot is on disk, then resumed by a fresh process
    proc = subprocess.Popen([*leangen, *train_args(data, tmp_path / "split", 6)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + LAUNCH_TIMEOUT
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if reached_step(tmp_path / "split", 2):
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    split = only_run(tmp_path / "split")
    killed_at = ckpt.load_state(ckpt.latest_snapshot(split))["step"]
    assert 2 <= killed_at < 6, "the first process ended before it could be killed"
    run([*leangen, "train", "--resume", str(split), "--steps", "6", "--device", "cpu", "--no-progress"])
    assert_same_final_state(only_run(tmp_path / "straight"), split, 6)
    assert "Resuming" in (split / "log.txt").read_text()


def test_world_size_2_resume_in_new_processes_is_bit_identical(tmp_path: Path) -> None:
    data = write_pngs(tmp_path / "pngs", n=10)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                "-m", "leangen"]
    run([*torchrun, *train_args(data, tmp_path / "straight", 4)])
    run([*torchrun, *train_args(data, tmp_path / "split", 2)])
    split = only_run(tmp_path / "split")
    run([*torchrun, "train", "--resume", str(split), "--steps", "4", "--device", "cpu", "--no-progress"])
    state = ckpt.load_state(ckpt.latest_snapshot(split))
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    assert_same_final_state(only_run(tmp_path / "straight"), split, 4)
