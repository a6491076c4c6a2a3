"""Shared pieces of every neighborhood-attention backend: argument checks, per-axis window indices, the separable
relative-bias read and the dilation-group reshapes (see ``leangen.ops.neighborhood`` for the semantics).

The dispatcher (``neighborhood``) and the backends (``neighborhood_tiled``, ``neighborhood_flex``) all import this
module, so the backends never import the dispatcher that imports them.
"""
from __future__ import annotations

from typing import Sequence

import torch

IntPair = int | tuple[int, int] | Sequence[int]


def pair(v: IntPair) -> tuple[int, int]:
    """``7 -> (7, 7)``; ``(7, 5) -> (7, 5)``."""
    if isinstance(v, int):
        return v, v
    a, b = v
    return int(a), int(b)


def check_na_args(h: int, w: int, kernel: tuple[int, int], dilation: tuple[int, int]) -> None:
    """``ValueError`` unless kernels are odd and positive, dilations positive and ``k * d <= size`` on both axes."""
    for axis, size, k, d in (("height", h, kernel[0], dilation[0]), ("width", w, kernel[1], dilation[1])):
        if k < 1 or k % 2 == 0:
            raise ValueError(f"neighborhood attention needs an odd kernel size >= 1, got {k} ({axis})")
        if d < 1:
            raise ValueError(f"dilation must be >= 1, got {d} ({axis})")
        if k * d > size:
            raise ValueError(f"kernel_size * dilation = {k} * {d} = {k * d} exceeds the input {axis} {size}: every "
                             f"query must see {k} keys of its dilation group")


def window_index(length: int, kernel: int, dilation: int, device: torch.device | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-axis key indices ``[L, k]`` of every query's window and the matching bias-table indices ``[L, k]``."""
    r = kernel // 2
    i = torch.arange(length, device=device)
    g, p = i % dilation, i // dilation
    group_len = (length - g + dilation - 1) // dilation
    start = torch.minimum((p - r).clamp(min=0), group_len - kernel)  # clamp(p - r, 0, L_g - k)
    t = torch.arange(kernel, device=device)
    keys = g[:, None] + (start[:, None] + t) * dilation
    bias = start[:, None] + t - p[:, None] + kernel - 1  # (j - i) / d + k - 1
    return keys, bias


def separable_bias(table: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``table [heads, A, C]`` read at every (row, col) pair: ``[heads, len(rows), len(cols)]`` with
    ``out[h, y, x] = table[h, rows[y], cols[x]]`` (0 where an index is -1).

    Written as two matrix products with one-hot matrices rather than an advanced-indexing gather: the gradient of a
    gather is a parallel scatter-add whose float sums depend on thread timing, which would break bit-exact resume.
    """
    dt = table.dtype if table.is_floating_point() else torch.float32
    oy = (rows[:, None] == torch.arange(table.shape[1], device=rows.device)).to(dt)  # [Y, A]
    ox = (cols[:, None] == torch.arange(table.shape[2], device=cols.device)).to(dt)  # [X, C]
    return (oy @ table) @ ox.t()


def to_dilation_groups(t: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``[B, heads, H, W, d]`` -> ``[B*dy*dx, heads, H/dy, W/dx, d]``: each dilation group's sub-grid as a batch
    item (dilated NA on H x W = plain NA on every sub-grid, when H and W are multiples of the dilation)."""
    b, heads, h, w, d = t.shape
    t = t.reshape(b, heads, h // dy, dy, w // dx, dx, d).permute(0, 3, 5, 1, 2, 4, 6)
    return t.reshape(b * dy * dx, heads, h // dy, w // dx, d)


def from_dilation_groups(t: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Inverse of ``to_dilation_groups``."""
    bg, heads, gh, gw, d = t.shape
    t = t.reshape(bg // (dy * dx), dy, dx, heads, gh, gw, d).permute(0, 3, 4, 1, 5, 2, 6)
    return t.reshape(bg // (dy * dx), heads, gh * dy, gw * dx, d)
