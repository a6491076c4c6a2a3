"""Before computing: will a metric fit in host memory, and is its sample size meaningful?

Memory: Inception-feature metrics keep float32 ``[N, 2048]`` features and make float64 copies for the statistics
(FID), kernels (KID) and distances (PR); ``fid99999999`` would need ~3 TiB. ``check_memory`` estimates the peak from
the sizes alone and refuses with a one-line ``ValueError`` that says what would fit, before anything is allocated.

Sample size: with N < 2048 images the 2048-d covariances are rank-deficient and FID is biased upwards (it falls with
N even for a perfect generator), so FIDs are comparable only at equal N; CPU-sized runs use fid200 routinely, which
is fine for comparing runs. Below ``FEW_SAMPLES`` images per side the numbers are dominated by the bias (FID) or by
noise (KID, PR): ``few_samples_warning`` says so, and the record keeps the warning.
"""
from __future__ import annotations

import os
from typing import Sequence

from leangen.metrics.base import MetricSpec
from leangen.metrics.inception import FEATURE_DIM

FEW_SAMPLES = 50
_GIB = float(1 << 30)


def available_memory() -> int | None:
    """Bytes of host memory available now (``MemAvailable``), else the physical total; None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def _spec_bytes(kind: str, num_gen: int, num_real: int, dim: int = FEATURE_DIM) -> tuple[int, int, int]:
    """(generated features kept, real features kept, transient peak) in bytes for one metric."""
    gen = 4 * dim * num_gen
    real = 4 * dim * num_real if kind in ("kid", "pr", "kid_pairs") else 0
    if kind in ("fid", "fid_pairs"):
        transient = 16 * dim * num_gen + (8 * num_gen * num_gen if num_gen <= dim else 0)  # float64 copy + centred
    elif kind in ("kid", "kid_pairs"):
        transient = 8 * dim * (num_gen + num_real) + 8 * min(num_gen ** 2 + num_real ** 2 + num_gen * num_real, 1 << 25)
    else:  # pr: float32 copies for torch, distance blocks of at most 2^26 entries
        transient = 4 * dim * (num_gen + num_real) + 12 * min(max(num_gen, num_real) ** 2, 1 << 26)
    return gen, real, transient


def memory_estimate(items: Sequence[tuple[MetricSpec, int, int]]) -> int:
    """Peak bytes for ``(spec, num_gen, num_real)`` computed in one call: kept features (shared between metrics of
    the same size) plus the largest transient."""
    gens: dict[int, int] = {}
    reals: dict[int, int] = {}
    peak = 0
    for spec, n_gen, n_real in items:
        g, r, t = _spec_bytes(spec.kind, n_gen, n_real)
        gens[n_gen] = max(gens.get(n_gen, 0), g)
        reals[n_real] = max(reals.get(n_real, 0), r)
        peak = max(peak, t)
    return sum(gens.values()) + sum(reals.values()) + peak


def _largest_fitting(spec: MetricSpec, n_gen: int, n_real: int, budget: int) -> int:
    lo, hi = 0, n_gen  # largest n with estimate(n, min(n_real, n)) <= budget, by bisection
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if memory_estimate([(spec, mid, min(n_real, mid))]) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _example_name(spec: MetricSpec, n: int) -> str:
    if spec.consumes != "samples":
        return f"{spec.kind}{n}"
    return f"{spec.kind}{n // 1000}k" if n >= 1000 else f"{spec.kind}{n}"


def check_memory(items: Sequence[tuple[MetricSpec, int, int]], available: int | None = None) -> None:
    """``ValueError`` (one line) when ``(spec, num_gen, num_real)`` items would not fit in ``available`` bytes
    (default: what the machine has free now); says what would fit. No-op when memory cannot be read."""
    if available is None:
        available = available_memory()
    if available is None or not items:
        return
    need = memory_estimate(items)
    if need <= available:
        return
    spec, n_gen, n_real = max(items, key=lambda it: memory_estimate([it]))
    fit = _largest_fitting(spec, n_gen, n_real, available)
    what = f"{n_gen:,} generated images" if spec.consumes == "samples" else f"{n_gen:,} images"
    hint = (f"about {fit:,} fit (e.g. {_example_name(spec, fit)})" if fit >= 2 else
            "not even 2 images fit; free some memory")
    raise ValueError(f"metric {spec.name}: {what} need ~{need / _GIB:,.1f} GiB of host memory for Inception "
                     f"features and statistics, only {available / _GIB:,.1f} GiB is available; {hint}")


def few_samples_warning(spec: MetricSpec, num_gen: int, num_real: int) -> str | None:
    """A warning text when a feature metric uses fewer than ``FEW_SAMPLES`` images on either side, else None."""
    n = min(num_gen, num_real)
    if n >= FEW_SAMPLES or not spec.uses_inception:
        return None
    sizes = f"{num_gen} generated vs {num_real} real images" if spec.consumes == "samples" else \
        f"{num_gen} translated vs {num_real} target images"
    why = {"fid": "FID is dominated by its small-sample bias (rank-deficient 2048-d covariances)",
           "kid": "KID is unbiased but very noisy", "pr": "k-NN manifolds of so few points are unreliable"}
    reason = why["fid" if "fid" in spec.kind else "kid" if "kid" in spec.kind else "pr"]
    return f"{spec.name} uses only {sizes} (< {FEW_SAMPLES}): {reason}; compare only at equal N, or use more images"


__all__ = ["FEW_SAMPLES", "available_memory", "memory_estimate", "check_memory", "few_samples_warning"]
