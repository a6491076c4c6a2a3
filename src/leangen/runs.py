"""Run directories and snapshots: atomic writes, keep-last-N, lookup and resume.

Layout (StyleGAN convention, with real training state)::

    runs/00003-stylegan2-tiny32-openmoji-32/
      training_options.json  log.txt  stats.jsonl  metric-<name>.jsonl  reals.png  fakes*.png  curves.png
      checkpoints/
        snapshot-000040/          G_ema/ G/ D/ (save_pretrained folders)  training_state.pt  index.json
        snapshot-000080/ ...
        superseded-snapshot-000120/   (newer than the snapshot a resume started from; see set_aside_newer)

A snapshot is written into ``checkpoints/.tmp-<name>-<pid>/`` and renamed into place, so a crash or a full disk
never leaves a half snapshot under a ``snapshot-*`` name. Names are ``snapshot-<kimg:06d>``; when a snapshot of the
same kimg exists (short runs), ``-s<step:09d>`` is appended. Both sort in training order.
``training_state.pt`` holds only tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(weights_only=True)``. ``index.json`` records ``{"files": {relative path: sha256}}`` (plus what the
caller passes as ``index``), so damage after the write (bad disk, partial copy) is detected before a resume.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import re
import shutil
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from leangen.utils.files import durable_writer
from leangen.utils.run_dirs import new_run_dir, run_id  # noqa: F401  (part of this module's API)
from leangen.utils.rng import get_rng_state, set_rng_state  # noqa: F401  (part of this module's API)

STATE_NAME = "training_state.pt"
INDEX_NAME = "index.json"
CHECKPOINTS = "checkpoints"
STATE_FORMAT = 1
SUPERSEDED = "superseded-"
_SNAP_RE = re.compile(r"snapshot-(\d{6,})(?:-s(\d+))?")


class SnapshotError(RuntimeError):
    """A snapshot could not be written; the previous one is intact."""


class IncompatibleCheckpointError(ValueError):
    """A snapshot does not match the model being trained (other preset, other architecture)."""


class CorruptSnapshotError(ValueError):
    """A snapshot file is damaged: truncated, unreadable or not matching the checksum in ``index.json``."""


class SkippedSnapshotWarning(UserWarning):
    """``resolve_resume`` passed over damaged snapshots for an older, intact one (the message names them)."""


# ----------------------------------------------------------------------------------------------------------------------
# Run directories (numbered folders: leangen.utils.run_dirs)

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


def newest_intact_snapshot(run_dir: str | os.PathLike) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest snapshot of a run that passes ``verify_snapshot`` (or None), and the newer damaged ones with why."""
    skipped: list[tuple[Path, str]] = []
    for snap in reversed(list_snapshots(run_dir)):
        try:
            verify_snapshot(snap)
        except CorruptSnapshotError as e:
            skipped.append((snap, str(e)))
            continue
        return snap, skipped
    return None, skipped


def resolve_resume(spec: str, outdir: str | os.PathLike) -> tuple[Path, Path]:
    """``RUN_DIR | SNAPSHOT_DIR | latest`` -> ``(run_dir, snapshot_dir)``; ``FileNotFoundError`` with a reason.

    For a run (or ``latest``) this is the newest *intact* snapshot: damaged newer ones are passed over with a
    ``SkippedSnapshotWarning`` naming them and why (``CorruptSnapshotError`` when none is intact). A snapshot named
    explicitly must itself be intact (``CorruptSnapshotError`` otherwise): it is never silently replaced.
    """
    if spec == "latest":
        run = latest_run(outdir)
        if run is None:
            raise FileNotFoundError(f"--resume latest: no run with a snapshot in {outdir}")
        return run, _intact_snapshot(run)
    path = Path(spec).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"--resume {spec}: no such run or snapshot directory")
    if (path / STATE_NAME).is_file():
        run = path.parent.parent if path.parent.name == CHECKPOINTS else path.parent
        verify_snapshot(path)
        return run, path
    if latest_snapshot(path) is None:
        raise FileNotFoundError(f"--resume {spec}: no complete snapshot in it (expected {CHECKPOINTS}/snapshot-*/"
                                f"{STATE_NAME})")
    return path, _intact_snapshot(path)


def _intact_snapshot(run: Path) -> Path:
    snap, skipped = newest_intact_snapshot(run)
    if snap is None:
        raise CorruptSnapshotError(f"no intact snapshot in {run}: {len(skipped)} damaged, the newest because "
                                   f"{skipped[0][1]}")
    if skipped:
        names = ", ".join(s.name for s, _ in skipped)
        warnings.warn(f"resuming from {snap.name}, the newest intact snapshot of {run}; passed over {names} "
                      f"(damaged: {skipped[0][1]})", SkippedSnapshotWarning, stacklevel=3)
    return snap


def set_aside_newer(run_dir: Path, snapshot: Path) -> list[Path]:
    """Resuming from an older snapshot: rename the newer ones to ``superseded-*`` so they are never 'latest'."""
    moved = []
    snaps = list_snapshots(run_dir)
    if snapshot.resolve() not in [s.resolve() for s in snaps]:
        return moved
    for s in snaps:
        if _snap_key(s) > _snap_key(snapshot):
            target = s.with_name(SUPERSEDED + s.name)
            if target.exists():
                shutil.rmtree(target)
            os.rename(s, target)
            moved.append(target)
    return moved


# ----------------------------------------------------------------------------------------------------------------------
# Writing

def _write_state(state: Mapping[str, Any], path: Path) -> None:
    """``torch.save`` plus fsync (a separate function so tests can simulate a full disk here).

    ``durable_writer`` re-raises the file's ``OSError`` that ``torch.save`` reports as ``RuntimeError``.
    """
    with durable_writer(path) as f:
        torch.save(dict(state), f)


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _write_index(folder: Path, extra: Mapping[str, Any] | None) -> None:
    """``folder/index.json``: ``extra`` plus ``"files"``, the sha256 of every other file under ``folder``."""
    files = {p.relative_to(folder).as_posix(): _sha256(p)
             for p in sorted(folder.rglob("*")) if p.is_file() and p != folder / INDEX_NAME}
    doc = {**(extra or {}), "files": files}
    with durable_writer(folder / INDEX_NAME) as f:
        f.write((json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())


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
                  keep: int | None = None, index: Mapping[str, Any] | None = None) -> Path:
    """Write ``modules`` (``save_pretrained``), ``state`` and ``index.json`` as ``run_dir/checkpoints/<name>``,
    atomically. ``index`` (JSON-able) is merged into ``index.json``; its ``"files"`` key is always the checksums.

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
        _write_index(tmp, index)
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
    """Delete all but the newest ``keep`` snapshots, and all but the newest ``keep`` set-aside ``superseded-*``
    ones (else every resume from an older snapshot would leave copies for good); return what was removed."""
    removed = []
    if keep > 0:
        removed = list_snapshots(run_dir)[:-keep] + _superseded(run_dir)[:-keep]
    for s in removed:
        shutil.rmtree(s, ignore_errors=True)
    return removed


def _superseded(run_dir: Path) -> list[Path]:
    """``superseded-snapshot-*`` folders of a run, oldest (in training order) first."""
    ckpt = run_dir / CHECKPOINTS
    if not ckpt.is_dir():
        return []
    aside = [p for p in ckpt.iterdir() if p.is_dir() and p.name.startswith(SUPERSEDED)
             and _SNAP_RE.fullmatch(p.name[len(SUPERSEDED):])]
    return sorted(aside, key=lambda p: _snap_key(p.with_name(p.name[len(SUPERSEDED):])))


def clean_partial(run_dir: Path) -> None:
    """Remove temporary folders left by a crash during a snapshot write."""
    ckpt = run_dir / CHECKPOINTS
    if ckpt.is_dir():
        for p in ckpt.iterdir():
            if p.name.startswith(".tmp-"):
                shutil.rmtree(p, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------------------------
# Reading

def verify_snapshot(snapshot: str | os.PathLike, parts: Iterable[str] | None = None) -> None:
    """Check the files listed in ``index.json`` against their sha256; ``CorruptSnapshotError`` names the first bad one.

    ``parts`` limits the check to those files or folders (e.g. ``["G_ema"]``, ``[STATE_NAME]``). A snapshot whose
    ``index.json`` is missing, or lists none of the files asked for, cannot be checked and is refused: a bit flip in
    it would otherwise load silently (and a garbled training state would surface as a NaN loss much later).
    """
    snapshot = Path(snapshot)
    index_path = snapshot / INDEX_NAME
    if not index_path.is_file():
        raise CorruptSnapshotError(f"{snapshot} has no {INDEX_NAME}, so its files cannot be checked against their "
                                   f"checksums (a partial copy?); use an intact snapshot")
    try:
        files = json.loads(index_path.read_bytes())["files"]
        if not isinstance(files, dict):
            raise TypeError(f"'files' is a {type(files).__name__}")
    except (ValueError, KeyError, TypeError) as e:
        raise CorruptSnapshotError(f"{index_path} is damaged ({e}), so the snapshot cannot be checked") from None
    wanted = None if parts is None else tuple(parts)
    listed = [rel for rel in sorted(files) if wanted is None
              or any(rel == p or rel.startswith(p.rstrip("/") + "/") for p in wanted)]
    if not listed:
        what = "no files" if wanted is None else f"no files of {', '.join(wanted)}"
        raise CorruptSnapshotError(f"{index_path} lists {what}, so the snapshot cannot be checked; use an intact "
                                   f"snapshot")
    for rel in listed:
        digest = files[rel]
        path = snapshot / rel
        if not path.is_file():
            raise CorruptSnapshotError(f"{path} is missing (listed in {INDEX_NAME})")
        if _sha256(path) != digest:
            raise CorruptSnapshotError(f"{path} is damaged: {path.stat().st_size} bytes whose sha256 differs from "
                                       f"the one recorded in {INDEX_NAME} when the snapshot was written")


def load_state(snapshot: Path) -> dict[str, Any]:
    """``training_state.pt`` of a snapshot, on the CPU, read with ``weights_only=True``.

    ``CorruptSnapshotError`` when it fails its checksum or is truncated/empty/unreadable.
    """
    verify_snapshot(snapshot, [STATE_NAME])
    path = snapshot / STATE_NAME
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (FileNotFoundError, PermissionError):
        raise
    except (EOFError, RuntimeError, pickle.UnpicklingError, ValueError, OSError) as e:
        # Empty: EOFError; truncated: RuntimeError (zip directory) or OSError(EINVAL) from a seek past the end.
        why = (str(e).strip().splitlines() or [type(e).__name__])[0].split(". ")[0]
        raise CorruptSnapshotError(f"{path} is truncated or damaged ({os.path.getsize(path)} bytes; {why}); resume "
                                   f"from an earlier snapshot") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise IncompatibleCheckpointError(f"{snapshot / STATE_NAME} is not a leangen training state "
                                          f"(format {state.get('format') if isinstance(state, dict) else '?'})")
    return state


def load_modules(snapshot: Path, modules: Mapping[str, nn.Module]) -> None:
    """Load ``snapshot/<name>/`` into each module in place; ``IncompatibleCheckpointError`` if it is another model,
    ``CorruptSnapshotError`` / ``ModelLoadError`` (both ``ValueError``) if its files are damaged."""
    from leangen.models.pretrained import CONFIG_NAME, WEIGHTS_NAME, capability, load_weights

    verify_snapshot(snapshot, list(modules))
    for role, module in modules.items():
        folder = snapshot / role
        if not (folder / CONFIG_NAME).is_file():
            raise IncompatibleCheckpointError(f"{snapshot} has no {role}/ (it holds "
                                              f"{', '.join(sorted(p.name for p in snapshot.iterdir() if p.is_dir()))})")
        try:
            meta = json.loads((folder / CONFIG_NAME).read_bytes())
        except ValueError as e:
            raise CorruptSnapshotError(f"{folder / CONFIG_NAME} is damaged ({e})") from None
        mine = {"model_type": capability(module, "model_type") or None, "config": capability(module, "config")}
        theirs = {"model_type": meta.get("model_type"), "config": meta.get("config")}
        if mine != theirs:
            diff = _config_diff(theirs, mine)
            raise IncompatibleCheckpointError(
                f"{folder} holds a different model than the one being trained ({diff}); resume with the preset and "
                f"overrides the run was started with, or start a new run")
        load_weights(module, folder / WEIGHTS_NAME)


def _config_diff(a: dict[str, Any], b: dict[str, Any]) -> str:
    if a["model_type"] != b["model_type"]:
        return f"model type {a['model_type']!r} in the snapshot vs {b['model_type']!r}"
    ca, cb = a["config"] or {}, b["config"] or {}
    keys = sorted(k for k in set(ca) | set(cb) if ca.get(k) != cb.get(k))
    return ", ".join(f"{k}: {ca.get(k)!r} in the snapshot vs {cb.get(k)!r}" for k in keys[:4]) or "config differs"
