"""Metric records (StyleGAN's ``metric-<name>.jsonl`` lines, with the protocol spelled out) and writing them.

A record::

    {"metric": "fid2k", "results": {"fid2k": 12.3}, "protocol": {...}, "higher_is_better": false,
     "consumes": "samples", "total_time": 81.2, "total_time_str": "1m 21s", "timestamp": 1.7e9, "device": "cpu",
     "num_gpus": 0, "snapshot": "...", "warning": "..."}

``snapshot`` only when given (the training loop ``setdefault``s it), ``warning`` only when there is one. The protocol
always has ``data_fingerprint`` (the content hash of the data measured on, None when the dataset has no
``fingerprint()``) and ``split`` when the caller named it.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import torch

from leangen.execution import current_policy

from leangen.metrics.base import MetricSpec, Outcome
from leangen.utils.timefmt import format_time


class MetricWarning(UserWarning):
    """A metric was computed, but its value should be read with care (see the record's ``warning``)."""


def make_record(spec: MetricSpec, outcome: Outcome, *, seconds: float, device: torch.device,
                snapshot: str | None = None, fingerprint: str | None = None,
                split: str | None = None) -> dict[str, Any]:
    """The record of one computed metric."""
    protocol = dict(outcome.protocol)
    protocol["data_fingerprint"] = fingerprint
    if split is not None:
        protocol["split"] = split
    record: dict[str, Any] = {
        "results": outcome.results, "metric": spec.name, "higher_is_better": bool(spec.higher_is_better),
        "consumes": spec.consumes, "total_time": seconds, "total_time_str": format_time(seconds),
        "num_gpus": 1 if device.type == "cuda" else 0, "device": str(device), "protocol": protocol,
        "execution": dataclasses.replace(current_policy(), device=device).record(), "timestamp": time.time(),
    }
    if snapshot is not None:  # absent rather than null, so a caller (the training loop) can setdefault it
        record["snapshot"] = snapshot
    if outcome.warnings:
        record["warning"] = "; ".join(outcome.warnings)
    return record


def report_metric(record: dict[str, Any], run_dir: str | os.PathLike | None) -> Path | None:
    """Append ``record`` as one JSON line to ``<run_dir>/metric-<metric>.jsonl`` (no-op for ``run_dir=None``)."""
    if run_dir is None:
        return None
    path = Path(run_dir) / f"metric-{record['metric']}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    return path


__all__ = ["MetricWarning", "make_record", "report_metric"]
