"""Run directories and snapshots: atomic writes, keep-last-N, lookup and resume.

Layout (StyleGAN convention, with real training state)::

    runs/00003-stylegan2-tiny32-openmoji-32/
      training_options.json  log.txt  stats.jsonl  metric-<name>.jsonl  reals.png  fakes*.png  curves.png
      checkpoints/
        snapshot-000040/          G_ema/ G/ D/ (save_pretrained folders)  training_state.pt
        snapshot-000080/ ...

A snapshot is written into ``checkpoints/.tmp-<name>-<pid>/`` and renamed into place, so a crash or a full disk
never leaves a half snapshot under a ``snapshot-*`` name. Names are ``snapshot-<kimg:06d>``; when a snapshot of the
same kimg exists (short runs), ``-s<step:09d>`` is appended. Both sort in training order.
``training_state.pt`` holds only tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import errno
import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

STATE_NAME = "training_state.pt"
CHECKPOINTS = "checkpoints"
STATE_FORMAT = 1
_SNAP_RE = re.compile(r"snapshot-(\d{6,})(?:-s(\d+))?")
_RUN_RE = re.compile(r"(\d+)-.*")


class SnapshotError(RuntimeError):
    """A snapshot could not be written; the previous one is intact."""


class IncompatibleCheckpointError(ValueError):
    """A snapshot does not match the model being trained (other preset, other architecture)."""


# ----------------------------------------------------------------------------------------------------------------------
# Run directories

def run_id(path: Path) -> int | None:
    m = _RUN_RE.fullmatch(path.name)
    return int(m.group(1)) if m and path.is_dir() else None


def new_run_dir(outdir: str | os.PathLike, desc: str) -> Path:
    """Create ``outdir/<next id:05d>-<desc>`` (next free id, like StyleGAN) and return it."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    desc = re.sub(r"[^\w.+-]+", "_", desc).strip("_") or "run"
    while True:
        ids = [i for p in outdir.iterdir() if (i := run_id(p)) is not None]
        path = outdir / f"{max(ids, default=-1) + 1:05d}-{desc}"
        try:
            path.mkdir()
            return path
        except FileExistsError:  # another process took that id in the meantime
            continue


def latest_run(outdir: str | os.PathLike) -> Path | None:
    """The run in ``outdir`` with the highest id that has a snapshot."""
    outdir = Path(outdir)
    if not outdir.is_dir():
        return None
    runs = sorted((p for p in outdir.iterdir() if run_id(p) is not None), key=lambda p: run_id(p) or 0)
    for run in reversed(runs):
        if latest_snapshot(run) is not None:
            return run
    return None


# ----------------------------------------------------------------------------------------------------------------------
# Snapshot lookup

def _snap_key(path: Path) -> tuple[int, int]:
    m = _SNAP_RE.fullmatch(path.name)
    assert m is not None
    return int(m.group(1)), int(m.group(2)) if m.group(2) is not None else -1


def list_snapshots(run_dir: str | os.PathLike) -> list[Path]:
    """Complete snapshots of a run (or of a ``checkpoints`` folder), oldest first."""
    run_dir = Path(run_dir)
    ckpt = run_dir if run_dir.name == CHECKPOINTS else run_dir / CHECKPOINTS
    if not ckpt.is_dir():
        return []
    snaps = [p for p in ckpt.iterdir() if p.is_dir() and _SNAP_RE.fullmatch(p.name) and (p / STATE_NAME).is_file()]
    return sorted(snaps, key=_snap_key)


def latest_snapshot(run_dir: str | os.PathLike) -> Path | None:
    """The newest complete snapshot of a run directory, or None."""
    snaps = list_snapshots(run_dir)
    return snaps[-1] if snaps else None


def snapshot_name(run_dir: Path, kimg: int, step: int) -> str:
    """``snapshot-<kimg:06d>``, or with ``-s<step:09d>`` when that kimg already has a snapshot (stays sortable)."""
    base = f"snapshot-{kimg:06d}"
    ckpt = run_dir / CHECKPOINTS
    taken = ckpt.is_dir() and any(p.name == base or p.name.startswith(base + "-s") for p in ckpt.iterdir())
    return f"{base}-s{step:09d}" if taken else base


def resolve_resume(spec: str, outdir: str | os.PathLike) -> tuple[Path, Path]:
    """``RUN_DIR | SNAPSHOT_DIR | latest`` -> ``(run_dir, snapshot_dir)``; ``FileNotFoundError`` with a reason."""
    if spec == "latest":
        run = latest_run(outdir)
        if run is None:
            raise FileNotFoundError(f"--resume latest: no run with a snapshot in {outdir}")
        return run, latest_snapshot(run)  # type: ignore[return-value]
    path = Path(spec).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"--resume {spec}: no such run or snapshot directory")
    if (path / STATE_NAME).is_file():
        run = path.parent.parent if path.parent.name == CHECKPOINTS else path.parent
        return run, path
    snap = latest_snapshot(path)
    if snap is None:
        raise FileNotFoundError(f"--resume {spec}: no complete snapshot in it (expected {CHECKPOINTS}/snapshot-*/"
                                f"{STATE_NAME})")
    return path, snap


def set_aside_newer(run_dir: Path, snapshot: Path) -> list[Path]:
    """Resuming from an older snapshot: rename the newer ones to ``superseded-*`` so they are never 'latest'."""
    moved = []
    snaps = list_snapshots(run_dir)
    if snapshot.resolve() not in [s.resolve() for s in snaps]:
        return moved
    for s in snaps:
        if _snap_key(s) > _snap_key(snapshot):
            target = s.with_name("superseded-" + s.name)
            if target.exists():
                shutil.rmtree(target)
            os.rename(s, target)
            moved.append(target)
    return moved


# ----------------------------------------------------------------------------------------------------------------------
# Writing

def _write_state(state: Mapping[str, Any], path: Path) -> None:
    """``torch.save`` plus fsync (a separate function so tests can simulate a full disk here)."""
    with open(path, "wb") as f:
        torch.save(dict(state), f)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - not possible on every platform
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def save_snapshot(run_dir: Path, name: str, modules: Mapping[str, nn.Module], state: Mapping[str, Any],
                  keep: int | None = None) -> Path:
    """Write ``modules`` (``save_pretrained``) and ``state`` as ``run_dir/checkpoints/<name>``, atomically.

    On any error the temporary folder is removed and earlier snapshots are untouched; an ``OSError`` (full disk,
    permissions) becomes ``SnapshotError`` with a readable message. Afterwards only the newest ``keep`` remain.
    """
    ckpt = run_dir / CHECKPOINTS
    ckpt.mkdir(parents=True, exist_ok=True)
    final = ckpt / name
    tmp = ckpt / f".tmp-{name}-{os.getpid()}"
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        for role, module in modules.items():
            module.save_pretrained(tmp / role)  # type: ignore[operator]
        _write_state(state, tmp / STATE_NAME)
        _fsync_dir(tmp)
        os.rename(tmp, final)  # atomic on POSIX: the snapshot appears complete or not at all
        _fsync_dir(ckpt)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            prev = latest_snapshot(run_dir)
            what = "no space left on device" if e.errno == errno.ENOSPC else (e.strerror or str(e))
            raise SnapshotError(
                f"could not write snapshot {name}: {what}. "
                + (f"The previous snapshot {prev} is intact" if prev else "No earlier snapshot exists")
                + f"; free space and resume with: leangen train --resume {run_dir}") from e
        raise
    if keep is not None:
        prune_snapshots(run_dir, keep)
    return final


def prune_snapshots(run_dir: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` snapshots; return what was removed."""
    snaps = list_snapshots(run_dir)
    removed = snaps[:-keep] if keep > 0 else []
    for s in removed:
        shutil.rmtree(s, ignore_errors=True)
    return removed


def clean_partial(run_dir: Path) -> None:
    """Remove temporary folders left by a crash during a snapshot write."""
    ckpt = run_dir / CHECKPOINTS
    if ckpt.is_dir():
        for p in ckpt.iterdir():
            if p.name.startswith(".tmp-"):
                shutil.rmtree(p, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------------------------
# Reading

def load_state(snapshot: Path) -> dict[str, Any]:
    """``training_state.pt`` of a snapshot, on the CPU, read with ``weights_only=True``."""
    state = torch.load(snapshot / STATE_NAME, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise IncompatibleCheckpointError(f"{snapshot / STATE_NAME} is not a leangen training state "
                                          f"(format {state.get('format') if isinstance(state, dict) else '?'})")
    return state


def load_modules(snapshot: Path, modules: Mapping[str, nn.Module]) -> None:
    """Load ``snapshot/<name>/`` into each module in place; ``IncompatibleCheckpointError`` if it is another model."""
    from safetensors.torch import load_file

    from leangen.models.base import CONFIG_NAME, WEIGHTS_NAME

    for role, module in modules.items():
        folder = snapshot / role
        if not (folder / CONFIG_NAME).is_file():
            raise IncompatibleCheckpointError(f"{snapshot} has no {role}/ (it holds "
                                              f"{', '.join(sorted(p.name for p in snapshot.iterdir() if p.is_dir()))})")
        meta = json.loads((folder / CONFIG_NAME).read_text())
        mine = {"model_type": getattr(module, "model_type", None), "config": getattr(module, "config", None)}
        theirs = {"model_type": meta.get("model_type"), "config": meta.get("config")}
        if mine != theirs:
            diff = _config_diff(theirs, mine)
            raise IncompatibleCheckpointError(
                f"{folder} holds a different model than the one being trained ({diff}); resume with the preset and "
                f"overrides the run was started with, or start a new run")
        state = load_file(str(folder / WEIGHTS_NAME), device=str(next(module.parameters()).device))
        module.load_state_dict(state, strict=True)


def _config_diff(a: dict[str, Any], b: dict[str, Any]) -> str:
    if a["model_type"] != b["model_type"]:
        return f"model type {a['model_type']!r} in the snapshot vs {b['model_type']!r}"
    ca, cb = a["config"] or {}, b["config"] or {}
    keys = sorted(k for k in set(ca) | set(cb) if ca.get(k) != cb.get(k))
    return ", ".join(f"{k}: {ca.get(k)!r} in the snapshot vs {cb.get(k)!r}" for k in keys[:4]) or "config differs"


# ----------------------------------------------------------------------------------------------------------------------
# RNG state as plain tensors (weights_only-loadable)

def get_rng_state(device: torch.device) -> dict[str, Any]:
    """Torch CPU (+ CUDA of ``device``), numpy and python ``random`` states."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()  # type: ignore[misc]
    version, py_state, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": int(version), "state": torch.tensor(py_state, dtype=torch.int64), "gauss": py_gauss},
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    npst = state["numpy"]
    np.random.set_state(("MT19937", npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"],
                         npst["gauss"]))
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
