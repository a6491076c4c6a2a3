"""Per-tick training statistics kept on the device, so the steps between two ticks never wait for the GPU.

Each step adds its statistics (detached 0-dim tensors) to running sums on the device and records, also on the
device, the first step at which each one stopped being finite. :meth:`TickStats.read` is the only place the host
looks at them: once per tick, one all-reduce over the ranks and one copy to the host. A non-finite value is thus
found at the latest at the tick after it appeared, before any snapshot of that tick is written.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from leangen.train.runtime import Runtime


@dataclass
class NonFinite:
    """The first statistic that was not finite: its name, the step (counted from 0) and its value there."""

    name: str
    step: int
    value: float


class TickStats:
    """Sums, counts and first non-finite steps of one tick's statistics. Counts are host integers (the host knows
    which statistics a step returned without reading them); everything else stays on the device until ``read``."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.first_bad: dict[str, torch.Tensor] = {}  # int64 step, -1 while finite
        self.bad_value: dict[str, torch.Tensor] = {}

    def add(self, stats: dict[str, torch.Tensor], step: int) -> None:
        """Accumulate one step's statistics (asynchronous device ops only: no value is read)."""
        for k, v in stats.items():
            v = v.detach().reshape(()).float()
            if k not in self.sums:
                self.sums[k] = v.clone()
                self.counts[k] = 1
                self.first_bad[k] = torch.full((), -1, dtype=torch.int64, device=v.device)
                self.bad_value[k] = torch.zeros((), device=v.device)
            else:
                self.sums[k] += v
                self.counts[k] += 1
            newly = ~torch.isfinite(v) & (self.first_bad[k] < 0)
            self.first_bad[k] = torch.where(newly, torch.full_like(self.first_bad[k], step), self.first_bad[k])
            self.bad_value[k] = torch.where(newly, v, self.bad_value[k])

    def __bool__(self) -> bool:
        return bool(self.sums)

    def read(self, rt: "Runtime", collective: bool = True) -> tuple[dict[str, float], NonFinite | None]:
        """The tick's means over steps and ranks, and the first non-finite statistic (None when all were finite).

        One collective and one device-to-host copy. A value that is non-finite on any rank makes the mean
        non-finite on every rank, so all ranks stop together. ``collective=False``: this rank's values alone (after
        a raw interrupt, when the other ranks may be anywhere)."""
        names = list(self.sums)
        if not names:
            return {}, None
        sums = torch.stack([self.sums[k] for k in names])
        if collective:
            sums = rt.all_reduce_mean(sums)
        local = torch.stack([self.first_bad[k].to(torch.float64) for k in names]
                            + [self.bad_value[k].to(torch.float64) for k in names])
        host = torch.cat([sums.to(torch.float64), local]).tolist()
        n = len(names)
        means = {k: host[i] / self.counts[k] for i, k in enumerate(names)}
        bad: NonFinite | None = None
        for i, k in enumerate(names):
            if math.isfinite(means[k]):
                continue
            step, value = int(host[n + i]), host[2 * n + i]
            if step < 0:  # another rank's value: this rank only sees the mean
                step, value = -1, means[k]
            if bad is None or (step >= 0 and (bad.step < 0 or step < bad.step)):
                bad = NonFinite(k, step, value)
        return means, bad
