"""Subscale ordering and bit-depth splitting (Subscale Pixel Networks, Menick & Kalchbrenner 2019).

An ``N x N`` image is cut into ``S*S`` interleaved slices of ``N/S x N/S``: slice ``(i, j)`` is ``x[..., i::S, j::S]``
and the slices are numbered in raster order over the offsets, ``t = i * S + j``. Slice 0 is a plain stride-``S``
subsample of the image. ``pixel_unshuffle`` already lays its output channels out as ``(c, i, j)``, so the slice stack
is a reshape of it (no gather), and ``pixel_shuffle`` is the exact inverse.

Bit depth: a ``bits``-bit value ``v`` splits into its ``high`` most significant bits ``v >> (bits - high)`` and the
rest ``v & (2**(bits - high) - 1)``; ``join_bits`` recombines them exactly.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _check_factor(size: int, factor: int) -> None:
    if factor < 1 or size % factor:
        raise ValueError(f"subscale factor S={factor} must divide the image size {size}")


def subscale_slices(images: torch.Tensor, factor: int) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B, S*S, C, H/S, W/S]`` with ``out[:, i*S + j] == images[..., i::S, j::S]``."""
    if images.dim() != 4:
        raise ValueError(f"expected images [B, C, H, W], got {tuple(images.shape)}")
    b, c, h, w = images.shape
    _check_factor(h, factor)
    _check_factor(w, factor)
    if factor == 1:
        return images.unsqueeze(1)
    # pixel_unshuffle does not take integer tensors on every backend: go through a lossless float view for uint8.
    src = images.float() if not images.is_floating_point() else images
    out = F.pixel_unshuffle(src, factor).view(b, c, factor * factor, h // factor, w // factor).transpose(1, 2)
    return out.to(images.dtype).contiguous()


def merge_slices(slices: torch.Tensor, factor: int) -> torch.Tensor:
    """Exact inverse of ``subscale_slices``: ``[B, S*S, C, h, w]`` -> ``[B, C, h*S, w*S]``."""
    if slices.dim() != 5 or slices.shape[1] != factor * factor:
        raise ValueError(f"expected slices [B, {factor * factor}, C, h, w], got {tuple(slices.shape)}")
    b, _, c, h, w = slices.shape
    if factor == 1:
        return slices[:, 0]
    src = slices.float() if not slices.is_floating_point() else slices
    out = F.pixel_shuffle(src.transpose(1, 2).reshape(b, c * factor * factor, h, w), factor)
    return out.to(slices.dtype)


def slice_offsets(factor: int) -> list[tuple[int, int]]:
    """The ``(i, j)`` offset of every slice, in generation (raster) order."""
    return [(i, j) for i in range(factor) for j in range(factor)]


def split_bits(values: torch.Tensor, high: int, bits: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """``bits``-bit integers -> (``high`` most significant bits, the ``bits - high`` low bits), same dtype."""
    if not 0 <= high <= bits:
        raise ValueError(f"high bits must be in 0..{bits}, got {high}")
    low = bits - high
    return torch.bitwise_right_shift(values, low), torch.bitwise_and(values, (1 << low) - 1)


def join_bits(high_part: torch.Tensor, low_part: torch.Tensor, low: int) -> torch.Tensor:
    """Exact inverse of ``split_bits``: ``(high << low) | low_part``."""
    return torch.bitwise_or(torch.bitwise_left_shift(high_part, low), low_part)
