"""Seed parsing (``0-63``, ``1,2,5-7``) and per-seed CPU latents, identical on every device."""
from __future__ import annotations

from typing import Iterable

import torch


def parse_seeds(text: str | int | Iterable[int]) -> list[int]:
    """Parse ``"0-3,7"`` into ``[0, 1, 2, 3, 7]``. Ranges are inclusive. Raises ``ValueError`` on bad input."""
    if isinstance(text, int):
        return [text]
    if not isinstance(text, str):
        return [int(s) for s in text]
    seeds: list[int] = []
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
                seeds.extend(range(lo_i, hi_i + 1))
            else:
                seeds.append(int(part))
        except (TypeError, ValueError):
            raise ValueError(f"bad seed list {text!r}: expected e.g. '0-63' or '1,2,5-7'") from None
    if not seeds:
        raise ValueError(f"bad seed list {text!r}: no seeds")
    return seeds


def latents_for_seeds(seeds: list[int], z_dim: int) -> torch.Tensor:
    """Return ``[len(seeds), z_dim]`` float32 normal latents, one CPU generator per seed (device-independent)."""
    zs = [torch.randn(z_dim, generator=torch.Generator("cpu").manual_seed(int(s))) for s in seeds]
    return torch.stack(zs)
