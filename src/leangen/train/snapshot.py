"""Snapshot and evaluate: the sample grid, the metrics and the atomic snapshot written every ``snap`` ticks.

Order: preview grid -> metrics on the in-memory entry module -> snapshot (whose ``training_state.pt`` already
holds the best metric including this evaluation, so a resumed run remembers it) -> metric records.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from leangen import runs
from leangen.tasks import Task, TaskData
from leangen.train.objective import Objective
from leangen.train.resume import RunState, saved_modules, snapshot_index
from leangen.train.runtime import Runtime
from leangen.utils.files import atomic_path
from leangen.utils.timefmt import format_time


class TrainingError(RuntimeError):
    """The run stopped for a reason the user can act on (message says what and how to continue)."""


class NonFiniteLossError(TrainingError):
    """A loss or statistic became NaN/inf; no snapshot was written after it."""


def save_grid(images: torch.Tensor, path: Path) -> None:
    from PIL import Image

    from leangen.models.base import image_grid

    with atomic_path(path) as tmp:
        Image.fromarray(image_grid(images)).save(tmp, format="PNG")


def param_checksums(modules: dict[str, nn.Module]) -> dict[str, float]:
    """Float64 sum of each module's parameters: equal on every rank iff the replicas agree (to the bit, in practice)."""
    return {name: float(sum(p.detach().double().sum() for p in m.parameters())) for name, m in modules.items()}


def first_non_finite(modules: dict[str, nn.Module]) -> str | None:
    """Name of the first parameter with a non-finite value, or None."""
    for name, m in modules.items():
        for pname, p in m.named_parameters():
            if not torch.isfinite(p).all():
                return f"{name}.{pname}"
    return None


def metric_value(record: Any, name: str) -> float | None:
    """The headline value of a metric record (the one named like the metric, else the first)."""
    if not isinstance(record, dict):
        return None
    results = record.get("results")
    if isinstance(results, dict):
        v = results.get(name, next(iter(results.values()), None))
        return float(v) if isinstance(v, (int, float)) else None
    v = record.get("value")
    return float(v) if isinstance(v, (int, float)) else None


def check_metrics(names: list[str]) -> dict[str, bool]:
    """``{name: higher_is_better}``; ``ValueError`` naming unknown metrics (before any training happens)."""
    if not names:
        return {}
    from leangen.metrics.registry import metric_info

    out = {}
    for n in names:
        out[n] = bool(metric_info(n).higher_is_better)
    return out


class SnapshotWriter:
    """Writes snapshots of one run (rank 0 writes files; every rank takes part in the collectives)."""

    def __init__(self, *, rt: Runtime, run_dir: Path, objective: Objective, task: Task, data: TaskData,
                 preset: str, metrics: list[str], keep: int, preview: dict[str, Any],
                 log: Callable[[str], None]) -> None:
        self.rt, self.run_dir, self.objective, self.task, self.data = rt, run_dir, objective, task, data
        self.preset, self.metrics, self.keep, self.preview_inputs, self.log = preset, metrics, keep, preview, log
        self.directions = check_metrics(metrics)
        self.history: dict[str, list[tuple[float, float]]] = {}

    def preview(self, path: Path) -> None:
        images = self.objective.preview(self.preview_inputs)
        if images is not None:
            save_grid(self.task.preview_grid(images, self.preview_inputs, self.data), path)

    def write(self, state: RunState, base: dict[str, Any], collective: bool = True) -> Path | None:
        """Grid, metrics and snapshot at ``state``; ``base`` is the rest of ``training_state.pt`` (optimizers, data
        position...). ``collective=False``: rank 0 alone (after a raw interrupt, other ranks may be anywhere)."""
        rt, modules = self.rt, self.objective.modules()
        rng = runs.get_rng_state(rt.device)
        rngs = rt.gather_object(rng) if collective else [rng]
        if rt.distributed and collective:
            sums = rt.gather_object(param_checksums(modules))
            if any(s != sums[0] for s in sums):
                raise TrainingError(f"ranks diverged at step {state.step}: parameter checksums {sums}")
            self.log(f"ranks in sync at step {state.step}: parameter checksums per rank {json.dumps(sums)}")
        bad = first_non_finite(modules)  # checked on every rank (the replicas agree), so all of them stop
        if bad is not None:
            raise NonFiniteLossError(f"parameter {bad} is not finite at step {state.step}; snapshot not written. "
                                     f"Last good snapshot: {runs.latest_snapshot(self.run_dir) or 'none'}")
        if not rt.is_main:
            return None
        kimg = state.cur_nimg // 1000
        self.preview(self.run_dir / f"fakes{kimg:06d}.png")
        name = runs.snapshot_name(self.run_dir, kimg, state.step)
        records, error = self._evaluate(state, self.run_dir / runs.CHECKPOINTS / name)
        doc = dict(base, rng=rngs, best_metric=state.best_metric)
        try:
            path = runs.save_snapshot(self.run_dir, name, saved_modules(self.objective), doc, keep=self.keep,
                                      index=snapshot_index(self.objective, self.task.name, self.preset))
        except runs.SnapshotError as e:
            raise TrainingError(str(e)) from e
        self.log(f"snapshot {path.relative_to(self.run_dir)}")
        from leangen.metrics.registry import report_metric

        for record in records:
            report_metric(record, self.run_dir)
        if error is not None:
            raise error
        return path

    def _evaluate(self, state: RunState, snapshot: Path) -> tuple[list[dict[str, Any]], BaseException | None]:
        """Run the metrics; update ``state.best_metric`` by each metric's declared direction. An error is returned
        (raised after the snapshot is safe), not raised."""
        if not self.metrics:
            return [], None
        from leangen.metrics.registry import calc_metrics

        dev = self.rt.device
        t0 = time.time()
        try:
            with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):  # keep the training RNG stream
                records = calc_metrics(list(self.metrics), self.objective.eval_model(), self.data.metric_data,
                                       device=dev, progress=False, **self.objective.metric_kwargs())
        except Exception as e:  # noqa: BLE001 - reported after the snapshot is written
            self.log(f"error: metrics failed at step {state.step}: {type(e).__name__}: {e}")
            return [], e
        took = format_time(time.time() - t0)
        kimg = state.cur_nimg / 1000
        for name, record in zip(self.metrics, records):
            record.setdefault("snapshot", str(snapshot))
            record.setdefault("kimg", kimg)
            value = metric_value(record, name)
            self.log(f"metric {name}: {value if value is not None else record} ({took} for {', '.join(self.metrics)})")
            if value is None:
                continue
            self.history.setdefault(name, []).append((kimg, value))
            best = state.best_metric
            higher = self.directions[name]
            if name == self.metrics[0] and (best is None or best.get("name") != name
                                            or (value > best["value"] if higher else value < best["value"])):
                state.best_metric = {"name": name, "value": value, "kimg": kimg, "snapshot": snapshot.name,
                                     "higher_is_better": higher}
        return records, None
