"""Pixel folding (space-to-depth) and unfolding (depth-to-space) in PixelFolder's channel order.

``fold2x``: ``[B, C, H, W]`` -> ``[B, 4C, H/2, W/2]``; ``unfold2x`` is its exact inverse. Each 2x2 block of pixels
at ``(2i + ph, 2j + pw)`` becomes four channels of pixel ``(i, j)``, in **block-position-major** order::

    fold2x(x)[b, (ph * 2 + pw) * C + c, i, j] == x[b, c, 2 * i + ph, 2 * j + pw]

``torch.nn.functional.pixel_unshuffle(x, 2)`` holds the same values in **channel-major** order (``c * 4 + ph * 2 + pw``),
so the two differ by a fixed channel permutation (``fold_permutation``)::

    fold2x(x) == F.pixel_unshuffle(x, 2)[:, fold_permutation(C)]
    unfold2x(y) == F.pixel_shuffle(y[:, unfold_permutation(C)], 2)      # y has 4C channels

Both functions accept NCHW and channels-last tensors (the result keeps the input's memory format; values are the
same). PixelFolder's official checkpoints were trained with this order, so the convs next to each fold/unfold only keep
their meaning when this order is reproduced (or when their weights are permuted with the indices above).
"""
from __future__ import annotations

import torch


def fold2x(x: torch.Tensor) -> torch.Tensor:
    """Space-to-depth by 2 in PixelFolder's order. ``[B, C, H, W]`` -> ``[B, 4C, H/2, W/2]``; H and W must be even."""
    if x.ndim != 4:
        raise ValueError(f"fold2x expects [B, C, H, W], got shape {tuple(x.shape)}")
    b, c, h, w = x.shape
    if h % 2 or w % 2:
        raise ValueError(f"fold2x needs even height and width, got {h}x{w}")
    if _is_channels_last(x):
        # Channels-last memory is [B, H, W, C] = (B, oH, pH, oW, pW, C); PixelFolder's order is (B, oH, oW, pH, pW, C),
        # so one copy that moves whole C-runs gives a channels-last result.
        y = x.permute(0, 2, 3, 1).reshape(b, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 2, 4, 5)
        return y.reshape(b, h // 2, w // 2, 4 * c).permute(0, 3, 1, 2)
    # (B, C, oH, pH, oW, pW) -> (B, pH, pW, C, oH, oW): the block position becomes the slowest channel index.
    x = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 3, 5, 1, 2, 4)
    return x.reshape(b, 4 * c, h // 2, w // 2)


def unfold2x(x: torch.Tensor) -> torch.Tensor:
    """Depth-to-space by 2, the exact inverse of ``fold2x``. ``[B, 4C, H, W]`` -> ``[B, C, 2H, 2W]``."""
    if x.ndim != 4:
        raise ValueError(f"unfold2x expects [B, C, H, W], got shape {tuple(x.shape)}")
    b, c4, h, w = x.shape
    if c4 % 4:
        raise ValueError(f"unfold2x needs a channel count divisible by 4, got {c4}")
    c = c4 // 4
    if _is_channels_last(x):
        # [B, iH, iW, (pH, pW, C)] -> [B, iH, pH, iW, pW, C]: again one copy of contiguous C-runs, channels-last out.
        y = x.permute(0, 2, 3, 1).reshape(b, h, w, 2, 2, c).permute(0, 1, 3, 2, 4, 5)
        return y.reshape(b, 2 * h, 2 * w, c).permute(0, 3, 1, 2)
    # (B, pH, pW, C, iH, iW) -> (B, C, iH, pH, iW, pW)
    x = x.reshape(b, 2, 2, c, h, w).permute(0, 3, 4, 1, 5, 2)
    return x.reshape(b, c, 2 * h, 2 * w)


def _is_channels_last(x: torch.Tensor) -> bool:
    # NCHW-contiguous wins ties (e.g. 1x1 maps are both), so plain tensors always take the reference path.
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def fold_permutation(channels: int) -> torch.Tensor:
    """Indices ``perm`` with ``fold2x(x) == F.pixel_unshuffle(x, 2)[:, perm]`` for ``x`` with ``channels`` channels.

    Output channel ``k = p * C + c`` (block position ``p = ph * 2 + pw``) is pixel_unshuffle's channel ``c * 4 + p``.
    """
    k = torch.arange(4 * channels)
    return (k % channels) * 4 + k // channels


def unfold_permutation(channels: int) -> torch.Tensor:
    """Indices with ``unfold2x(y) == F.pixel_shuffle(y[:, perm], 2)``; the inverse of ``fold_permutation(channels)``.

    ``channels`` is the channel count *after* unfolding (``y`` has ``4 * channels``).
    """
    return torch.argsort(fold_permutation(channels))
