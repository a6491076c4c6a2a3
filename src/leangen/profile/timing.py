"""Interleaved timing: several models measured round-robin in one process, so their ratios are fair."""
from __future__ import annotations

import math
import statistics
import time
from typing import Any, Callable, Sequence

import torch
from torch import nn

from leangen.profile.device import sync
from leangen.profile.inputs import call_model

#: One timed forward: ``(model, args, kwargs)``; any callable does (an ONNX Runtime session's bound ``run``).
Call = tuple[nn.Module | Callable[..., Any], tuple[Any, ...], dict[str, Any]]


def time_interleaved(calls: Sequence[Call], device: torch.device, warmup: int, repeats: int,
                     log: Callable[[str], None]) -> list[list[float]]:
    """Seconds of each timed forward, per call: ``warmup + repeats`` rounds under ``torch.inference_mode()``.

    Round ``r`` runs every call once, starting from call ``r mod N``, so no model always follows the same neighbour
    (caches, clocks and allocator state are shared). Only the last ``repeats`` rounds are kept.
    """
    n = len(calls)
    times: list[list[float]] = [[] for _ in range(n)]
    with torch.inference_mode():
        for r in range(warmup + repeats):
            log(f"{'warm-up' if r < warmup else 'timed'} round {r + 1}/{warmup + repeats}")
            for j in range(n):
                i = (r + j) % n
                model, args, kwargs = calls[i]
                sync(device)
                t0 = time.perf_counter()
                out = call_model(model, args, kwargs)
                sync(device)
                dt = time.perf_counter() - t0
                del out
                if r >= warmup:
                    times[i].append(dt)
    return times


def latency_stats(times: Sequence[float]) -> tuple[float, float]:
    """``(median, 90th percentile)`` of the timings, in their unit (nearest-rank percentile, no interpolation)."""
    ts = sorted(times)
    return statistics.median(ts), ts[min(len(ts) - 1, math.ceil(0.9 * len(ts)) - 1)]
