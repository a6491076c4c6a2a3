"""When distillation stops: the student's validation metric against the teacher's, measured the same way.

``leangen compress --distill-eval-every N`` evaluates the student every N distillation steps on the validation split
(the protocol of ``--metrics``), keeps the best student, and stops early once it is within ``--quality-target`` of the
teacher or after ``--patience`` evaluations without a new best; ``--distill-steps`` stays the upper bound.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class StopRule:
    """Early stopping of distillation on a validation metric.

    ``quality_target``: stop once ``gap(student, teacher) <= quality_target`` (1.10 = at most 10% worse);
    ``patience``: stop after this many evaluations in a row without a new best; ``higher_is_better``: the metric's
    direction (PSNR up, FID and L1 down).
    """

    quality_target: float | None = None
    patience: int | None = None
    higher_is_better: bool = False

    def gap(self, student: float, teacher: float) -> float:
        """How many times worse the student is than the teacher: 1.0 equal, below 1 better, ``inf`` undefined."""
        worse, better = (teacher, student) if self.higher_is_better else (student, teacher)
        if better <= 0:  # a ratio of signed or zero values means nothing; only "no worse" is certain
            return 1.0 if worse <= better else math.inf
        return worse / better

    def best(self, values: list[float]) -> int:
        """Index of the best value (the first one among equals: fewer steps for the same quality)."""
        key = (lambda i: -values[i]) if self.higher_is_better else (lambda i: values[i])
        return min(range(len(values)), key=key)

    def reason_to_stop(self, values: list[float], teacher: float) -> str | None:
        """Why distillation stops after the last of ``values`` (one per evaluation, in order), or ``None``."""
        if not values:
            return None
        if self.quality_target is not None and self.gap(values[-1], teacher) <= self.quality_target:
            return f"quality target met: {self.gap(values[-1], teacher):.3f}x the teacher <= {self.quality_target:g}x"
        if self.patience is not None and len(values) - 1 - self.best(values) >= self.patience:
            return f"no new best in {self.patience} evaluations"
        return None


__all__ = ["StopRule"]
