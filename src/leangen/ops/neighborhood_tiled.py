"""The ``tiled`` backend of ``neighborhood_attention2d``: queries in ``T x T`` tiles attend densely (one GEMM) to the
``(T + k - 1)^2`` keys that hold all their windows, with a -inf/bias table selecting each query's own ``k x k``.

It does ``(T + k - 1)^2 / k^2`` times the exact multiply-adds (4x at T = 8, k = 7) but as batched matrix products
instead of ``N * k^2`` gathered vectors, which is much faster on CPUs. Dilation: when the sizes are multiples of it,
the ``d_y * d_x`` dilation groups are moved into the batch (dilated NA = plain NA per sub-grid); other sizes are
handled by the ``gather`` backend. Plain indexing + matmul + softmax: differentiable and exportable to ONNX.
"""
from __future__ import annotations

import functools

import torch

from leangen.ops.neighborhood_base import separable_bias, window_index

TILE = 8


def _axis_tiles(length: int, k: int, tile: int, device: torch.device
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """For one axis: query indices per tile ``[n, T]`` (the last tile clamped), key-region indices ``[n, R]`` and the
    bias-table index of (query, region key) ``[n, T, R]`` (``-1`` where the key is outside the query's window)."""
    t = min(tile, length)
    n = -(-length // t)
    region = min(t + k - 1, length)
    queries = (torch.arange(n, device=device)[:, None] * t + torch.arange(t, device=device)).clamp(max=length - 1)
    keys, _ = window_index(length, k, 1, device)
    start = keys[:, 0]  # window start of every query
    first = start[queries[:, 0]]
    rstart = torch.minimum(first, torch.full_like(first, length - region))
    rkeys = rstart[:, None] + torch.arange(region, device=device)  # [n, R]
    qs = start[queries]  # [n, T]
    inside = (rkeys[:, None, :] >= qs[..., None]) & (rkeys[:, None, :] < qs[..., None] + k)
    bias = torch.where(inside, rkeys[:, None, :] - queries[..., None] + k - 1, torch.full_like(inside, -1, dtype=torch.long))
    return queries, rkeys, bias, n


def _layout(h: int, w: int, kernel: tuple[int, int], tile: int, device: torch.device
            ) -> tuple[torch.Tensor, ...]:
    """Query/region indices and bias-table indices ``[n, T, R]`` per axis, and the additive mask
    ``[ny, nx, T^2, R^2]`` (0 inside each query's window, -inf outside)."""
    (kh, kw) = kernel
    qy, ry, by, ny = _axis_tiles(h, kh, tile, device)
    qx, rx, bx, nx = _axis_tiles(w, kw, tile, device)
    masked = (by < 0)[:, None, :, None, :, None] | (bx < 0)[None, :, None, :, None, :]  # [ny, nx, T, T, R, R]
    mask = torch.zeros(masked.shape, device=device).masked_fill(masked, float("-inf"))
    return qy, ry, qx, rx, by, bx, mask.reshape(ny, nx, qy.shape[1] * qx.shape[1], ry.shape[1] * rx.shape[1])


@functools.lru_cache(maxsize=32)
def _cached_layout(h: int, w: int, kernel: tuple[int, int], tile: int, device: torch.device
                   ) -> tuple[torch.Tensor, ...]:
    # Built as normal tensors even when first asked for under inference mode, so autograd may use them later.
    with torch.inference_mode(False):
        return _layout(h, w, kernel, tile, device)


def _get_layout(h: int, w: int, kernel: tuple[int, int], tile: int, device: torch.device):  # type: ignore[no-untyped-def]
    # Input-independent, so cached; but recomputed (as graph ops) while tracing, so exports carry no large constants.
    tracing = torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export()
    return _layout(h, w, kernel, tile, device) if tracing else _cached_layout(h, w, kernel, tile, device)


def tiled_neighborhood_attention2d(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel: tuple[int, int],
                                   rpb: torch.Tensor | None, scale: float, tile: int = TILE) -> torch.Tensor:
    """Plain (dilation 1) NA of ``[B, heads, H, W, d]`` tensors (arguments already checked)."""
    b, heads, h, w, dim = q.shape
    qy, ry, qx, rx, by, bx, mask = _get_layout(h, w, kernel, tile, q.device)
    ny, nx, ty, tx = qy.shape[0], qx.shape[0], qy.shape[1], qx.shape[1]

    def tiles(t: torch.Tensor, iy: torch.Tensor, ix: torch.Tensor) -> torch.Tensor:
        # [B, heads, H, W, d] -> [B, heads, ny, nx, len_y * len_x, d]
        # index_select: its backward (index_add) sums in a fixed order, unlike advanced indexing's scatter-add
        t = t.index_select(2, iy.reshape(-1)).index_select(3, ix.reshape(-1))
        t = t.reshape(b, heads, iy.shape[0], iy.shape[1], ix.shape[0], ix.shape[1], t.shape[-1])
        return t.permute(0, 1, 2, 4, 3, 5, 6).reshape(b, heads, iy.shape[0], ix.shape[0], -1, t.shape[-1])

    logits = (tiles(q, qy, qx) * scale) @ tiles(k, ry, rx).transpose(-1, -2)  # [B, heads, ny, nx, T^2, R^2]
    bias = mask.to(q.dtype)
    if rpb is not None:  # [heads, (ny, T, R), (nx, T, R)] -> [heads, ny, nx, T^2, R^2]
        table = separable_bias(rpb.to(q.dtype), by.reshape(-1), bx.reshape(-1))
        table = table.reshape(heads, ny, ty, ry.shape[1], nx, tx, rx.shape[1]).permute(0, 1, 4, 2, 5, 3, 6)
        bias = bias + table.reshape(heads, ny, nx, ty * tx, -1)
    attn = torch.softmax(logits + bias, dim=-1)
    out = attn @ tiles(v, ry, rx)  # [B, heads, ny, nx, T^2, d]
    out = out.reshape(b, heads, ny, nx, ty, tx, -1).permute(0, 1, 2, 4, 3, 5, 6)
    return out.reshape(b, heads, ny * ty, nx * tx, -1)[:, :, :h, :w]
