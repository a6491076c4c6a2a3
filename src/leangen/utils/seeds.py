"""Seed parsing (``0-63``, ``1,2,5-7``) and per-seed CPU latents, identical on every device."""
from __future__ import annotations

from typing import Iterable, Sized

import torch


MAX_SEEDS = 1_000_000  # per call: a million images is days of generation; more is almost surely a typo
MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes a 64-bit value; int64 keeps it storable in tensors


def parse_seeds(text: str | int | Iterable[int]) -> list[int]:
    """Parse ``"0-3,7"`` into ``[0, 1, 2, 3, 7]``. Ranges are inclusive.

    Raises ``ValueError`` on bad input, on a seed outside ``0..MAX_SEED``, and on more than ``MAX_SEEDS`` seeds
    (checked before the list is built, so an absurd range fails at once instead of exhausting memory).
    """
    if isinstance(text, int):
        return _check([text], text)
    if not isinstance(text, str):
        if isinstance(text, Sized) and len(text) > MAX_SEEDS:
            raise ValueError(f"{len(text):,} seeds: at most {MAX_SEEDS:,} per call (split the list)")
        return _check([int(s) for s in text], text)
    ranges: list[range] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part[1:]:
                lo, hi = part.split("-", 1) if not part.startswith("-") else (part, None)  # type: ignore[assignment]
                lo_i, hi_i = int(lo), int(hi)
                if hi_i < lo_i:
                    raise ValueError
                ranges.append(range(lo_i, hi_i + 1))
            else:
                ranges.append(range(int(part), int(part) + 1))
        except (TypeError, ValueError):
            raise ValueError(f"bad seed list {text!r}: expected e.g. '0-63' or '1,2,5-7'") from None
    count = sum(len(r) for r in ranges)
    if count > MAX_SEEDS:
        raise ValueError(f"seed list {text!r} has {count:,} seeds: at most {MAX_SEEDS:,} per call (split it into "
                         f"several runs)")
    if not count:
        raise ValueError(f"bad seed list {text!r}: no seeds")
    return _check([s for r in ranges for s in r], text)


def _check(seeds: list[int], text: object) -> list[int]:
    bad = next((s for s in seeds if not 0 <= s <= MAX_SEED), None)
    if bad is not None:
        raise ValueError(f"bad seed {bad} in {text!r}: seeds are integers from 0 to 2**63-1")
    return seeds


def latents_for_seeds(seeds: list[int], z_dim: int) -> torch.Tensor:
    """Return ``[len(seeds), z_dim]`` float32 normal latents, one CPU generator per seed (device-independent)."""
    zs = [torch.randn(z_dim, generator=torch.Generator("cpu").manual_seed(int(s))) for s in seeds]
    return torch.stack(zs)
