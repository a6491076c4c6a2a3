"""Blocks of spatially-adaptive pixelwise networks (ASAP-Net, Rott Shaham et al. 2021).

- ``tent_downsample``: a fixed separable triangle (bilinear) filter with stride ``s`` and reflect padding: the
  non-learned part S1 of the low-resolution stream's downsampling.
- ``periodic_encoding``: sin/cos of ``2*pi*(x mod f)/f`` for ``f = S, S/2, ..., 2`` along x and y:
  ``4*log2(S)`` channels, periodic inside every ``S x S`` tile. Computed for the size it is asked for, every call.
- ``tiled_mlp``: every ``S x S`` tile of a full-resolution feature map goes through its own small MLP whose weights
  and biases come from one cell of a low-resolution parameter grid, as batched matmuls (nearest "upsampling" of the
  parameter grid without materialising it).
- ``tiled_mlp_labels``: the same on integer label maps, with the one-hot part of the first layer as a row lookup and
  the (tile-periodic) positional part as one small GEMM per tile, so the full-resolution MLP input is never built.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F


def is_power_of_two(n: int) -> bool:
    return n >= 1 and (n & (n - 1)) == 0


def tent_taps(stride: int) -> torch.Tensor:
    """1-D triangle filter of ``2 * stride`` taps (sum 1): bilinear interpolation weights for a ``stride`` reduction."""
    i = torch.arange(2 * stride, dtype=torch.float32) + 0.5
    taps = 1 - (i - stride).abs() / stride
    return taps / taps.sum()


def tent_downsample(x: torch.Tensor, stride: int) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B, C, H/stride, W/stride]`` with a fixed tent filter (identity for ``stride == 1``)."""
    if stride == 1:
        return x
    if not is_power_of_two(stride):
        raise ValueError(f"tent downsampling needs a power-of-two stride, got {stride}")
    c = x.shape[1]
    taps = tent_taps(stride).to(device=x.device, dtype=x.dtype)
    kernel = (taps[:, None] * taps[None, :]).expand(c, 1, -1, -1)
    # Reflect padding of stride/2 per side keeps H/stride outputs and does not darken the border.
    x = F.pad(x, [stride // 2] * 4, mode="reflect")
    return F.conv2d(x, kernel, stride=stride, groups=c)


def periodic_encoding_channels(tile: int) -> int:
    """Channels of ``periodic_encoding`` for a tile size ``S``: ``4 * log2(S)``."""
    return 4 * int(round(math.log2(tile)))


def periodic_encoding(height: int, width: int, tile: int, device: torch.device | str | None = None,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``[1, 4*log2(tile), height, width]``: (cos x, sin x, cos y, sin y) for periods ``tile, tile/2, ..., 2``.

    Built from the requested size on every call (no cache keyed on the first size seen).
    """
    if not is_power_of_two(tile) or tile < 2:
        raise ValueError(f"the tile size must be a power of two >= 2, got {tile}")
    xs = torch.arange(width, device=device, dtype=torch.float32)
    ys = torch.arange(height, device=device, dtype=torch.float32)
    chans = []
    f = tile
    while f >= 2:
        ax = 2 * math.pi * torch.remainder(xs, f) / f
        ay = 2 * math.pi * torch.remainder(ys, f) / f
        chans += [ax.cos().expand(height, -1), ax.sin().expand(height, -1),
                  ay.cos()[:, None].expand(-1, width), ay.sin()[:, None].expand(-1, width)]
        f //= 2
    return torch.stack(chans).unsqueeze(0).to(dtype)


def mlp_param_count(channels: Sequence[int]) -> int:
    """Number of weights + biases of an MLP with the given layer widths ``[in, h, ..., out]``."""
    return sum(ci * co + co for ci, co in zip(channels[:-1], channels[1:]))


def tiled_mlp(x: torch.Tensor, params: torch.Tensor, channels: Sequence[int], tile: int,
              negative_slope: float = 0.01) -> torch.Tensor:
    """Apply one MLP per ``tile x tile`` tile.

    Args:
        x: ``[B, channels[0], H, W]`` full-resolution inputs (H, W multiples of ``tile``).
        params: ``[B, P, H/tile, W/tile]`` with ``P = mlp_param_count(channels)``; per layer the vector holds
            ``[bias (c_out), weight (c_in * c_out, row-major [c_in, c_out])]``.
        channels: layer widths ``[c_in, hidden..., c_out]``; hidden layers use LeakyReLU, the output tanh.

    Returns:
        ``[B, channels[-1], H, W]`` in (-1, 1).
    """
    b, c, h, w = x.shape
    gh, gw = h // tile, w // tile
    if gh * tile != h or gw * tile != w or tuple(params.shape[2:]) != (gh, gw):
        raise ValueError(f"a {h}x{w} input needs a {gh}x{gw} parameter grid of {tile}px tiles, got "
                         f"{tuple(params.shape[2:])}")
    t = gh * gw
    # [B, C, gh, S, gw, S] -> [B * tiles, S*S pixels, C]
    feats = x.reshape(b, c, gh, tile, gw, tile).permute(0, 2, 4, 3, 5, 1).reshape(b * t, tile * tile, c)
    return _run_layers(feats, _tile_params(params), channels, 0, 0, b, gh, gw, tile, negative_slope)


def tiled_mlp_labels(labels: torch.Tensor, num_lookup: int, dense: torch.Tensor | None, params: torch.Tensor,
                     channels: Sequence[int], tile: int, negative_slope: float = 0.01) -> torch.Tensor:
    """``tiled_mlp`` of ``cat([one_hot(labels)[:, :num_lookup], dense, periodic_encoding], 1)`` without building
    that input: the one-hot part of the first layer is a row lookup, the positional part one GEMM per tile.

    Args:
        labels: int ``[B, H, W]``; ids outside ``[0, num_lookup)`` select no row (as their one-hot channels would be
            missing or zero).
        num_lookup: one-hot channels the MLP sees (the first rows of its first weight).
        dense: optional ``[B, Cd, H, W]`` channels after them (e.g. instance edges), multiplied as in ``tiled_mlp``.
        params, channels, tile: as in ``tiled_mlp``; ``channels[0] = num_lookup + Cd + periodic_encoding_channels``.

    Same values as ``tiled_mlp`` on the concatenated input (rounding aside): a one-hot row times a weight is that
    weight's row, and the periodic encoding is the same in every tile (its periods divide the tile). It saves the
    full-resolution ``[B, channels[0], H, W]`` input, its tile-major copy and ``num_lookup / channels[0]`` of the first
    layer's multiply-adds.
    """
    b, h, w = labels.shape
    gh, gw = h // tile, w // tile
    t = gh * gw
    nd = 0 if dense is None else dense.shape[1]
    npos = periodic_encoding_channels(tile)
    ci, co = channels[0], channels[1]
    if ci != num_lookup + nd + npos:
        raise ValueError(f"the first layer takes {ci} inputs, not {num_lookup} labels + {nd} dense + {npos} positional")
    p = _tile_params(params)
    if gh * tile != h or gw * tile != w or p.shape[0] != b * t:
        raise ValueError(f"a {h}x{w} input needs a {gh}x{gw} parameter grid of {tile}px tiles")
    bias = p[:, :co].unsqueeze(1)  # [BT, 1, co]
    weight = p[:, co:co + ci * co].reshape(b * t, ci, co)
    # Label rows plus one zero row that every id outside [0, num_lookup) selects.
    rows = torch.cat([weight[:, :num_lookup], weight.new_zeros(b * t, 1, co)], 1)  # [BT, num_lookup + 1, co]
    ids = labels.long()
    ids = torch.where((ids >= 0) & (ids < num_lookup), ids, num_lookup)
    ids = ids.reshape(b, gh, tile, gw, tile).permute(0, 1, 3, 2, 4).reshape(b * t, tile * tile)
    ids = ids + torch.arange(b * t, device=ids.device).unsqueeze(1) * (num_lookup + 1)
    first = F.embedding(ids, rows.reshape(-1, co)) + bias  # [BT, S*S, co]
    pos = periodic_encoding(tile, tile, tile, labels.device, p.dtype).reshape(npos, tile * tile).t()  # [S*S, npos]
    first = torch.baddbmm(first, pos.expand(b * t, -1, -1), weight[:, num_lookup + nd:])
    if dense is not None:
        d = dense.to(p.dtype).reshape(b, nd, gh, tile, gw, tile).permute(0, 2, 4, 3, 5, 1).reshape(b * t, -1, nd)
        first = torch.baddbmm(first, d, weight[:, num_lookup:num_lookup + nd])
    last = len(channels) == 2
    first = torch.tanh(first) if last else F.leaky_relu(first, negative_slope, inplace=True)
    return _run_layers(first, p, channels, 1, co + ci * co, b, gh, gw, tile, negative_slope)


def _tile_params(params: torch.Tensor) -> torch.Tensor:
    """``[B, P, gh, gw]`` -> ``[B * tiles, P]`` row-major. One copy: without it (a channels-first conv output) every
    weight slice is strided across tiles and CPU bmm falls back to a per-tile loop, 5-10x slower."""
    return params.permute(0, 2, 3, 1).reshape(-1, params.shape[1]).contiguous()


def _run_layers(feats: torch.Tensor, p: torch.Tensor, channels: Sequence[int], start: int, offset: int, b: int,
                gh: int, gw: int, tile: int, negative_slope: float) -> torch.Tensor:
    """Layers ``start..`` of the tiles' MLPs on ``feats [B * tiles, S*S, channels[start]]`` (``offset``: where layer
    ``start``'s parameters begin in ``p``) -> ``[B, channels[-1], H, W]``."""
    bt = feats.shape[0]
    last = len(channels) - 2
    for i in range(start, len(channels) - 1):
        ci, co = channels[i], channels[i + 1]
        bias = p[:, offset:offset + co].unsqueeze(1)
        weight = p[:, offset + co:offset + co + ci * co].reshape(bt, ci, co)
        offset += co + ci * co
        feats = torch.baddbmm(bias, feats, weight)  # bias added inside the GEMM: one pass less over the pixels
        feats = torch.tanh(feats) if i == last else F.leaky_relu(feats, negative_slope, inplace=True)
    co = channels[-1]
    return feats.reshape(b, gh, gw, tile, tile, co).permute(0, 5, 1, 3, 2, 4).reshape(b, co, gh * tile, gw * tile)
