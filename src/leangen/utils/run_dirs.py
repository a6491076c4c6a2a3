"""Numbered run folders, StyleGAN's layout: ``<outdir>/<id:05d>-<desc>/``, ids claimed atomically so runs started
together never share one. What a run folder holds is ``leangen.runs``' business."""
from __future__ import annotations

import os
import re
from pathlib import Path

_RUN_RE = re.compile(r"(\d+)-.*")
_CLAIM_RE = re.compile(r"\.claim-(\d+)")


def run_id(path: Path) -> int | None:
    """The id of run folder ``path`` (``00003-...`` -> 3); None for anything else."""
    m = _RUN_RE.fullmatch(path.name)
    return int(m.group(1)) if m and path.is_dir() else None


def new_run_dir(outdir: str | os.PathLike, desc: str) -> Path:
    """Create ``outdir/<next id:05d>-<desc>`` (next free id, like StyleGAN) and return it.

    Runs started together get distinct ids whatever their ``desc``: the id itself is claimed first by creating
    ``outdir/.claim-<id>`` (``mkdir`` succeeds for exactly one process), then the run folder is made and the claim
    dropped. A claim left by a killed process only makes later runs skip that id.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    desc = re.sub(r"[^\w.+-]+", "_", desc).strip("_") or "run"
    while True:
        rid = max(_taken_ids(outdir), default=-1) + 1
        claim = outdir / f".claim-{rid:05d}"
        try:
            claim.mkdir()
        except FileExistsError:  # another process claims that id right now
            continue
        try:
            # A process that scanned earlier may have made its run folder and released this id's claim since.
            if any(run_id(p) == rid for p in outdir.iterdir()):
                continue
            path = outdir / f"{rid:05d}-{desc}"
            path.mkdir()
            return path
        finally:
            claim.rmdir()


def _taken_ids(outdir: Path) -> list[int]:
    """Ids of the run folders and of the claims in ``outdir``."""
    ids = []
    for p in outdir.iterdir():
        m = _CLAIM_RE.fullmatch(p.name)
        i = int(m.group(1)) if m else run_id(p)
        if i is not None:
            ids.append(i)
    return ids


__all__ = ["new_run_dir", "run_id"]
