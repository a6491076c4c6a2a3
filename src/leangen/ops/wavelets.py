"""Orthonormal 2-D Haar wavelet transform (one level), as the input decomposition of SWAGAN/StyleSwin/StyleNAT's
wavelet discriminator.

``haar_dwt2d``: ``[B, C, H, W]`` -> ``[B, 4C, H/2, W/2]``, bands stacked band-major ``[LL, LH, HL, HH]`` (each ``C``
channels), where the first letter is the filter along y (rows) and the second along x (columns), with the 1-D filters
``low = [1, 1] / sqrt(2)`` and ``high = [-1, 1] / sqrt(2)``. The transform is orthonormal (energy preserving), so
``haar_idwt2d`` is its exact inverse; on dyadic values (e.g. integers) the round trip is bit-exact because every
coefficient is a sum of four terms times 0.5.
"""
from __future__ import annotations

import torch


def haar_dwt2d(x: torch.Tensor) -> torch.Tensor:
    """One Haar analysis level. ``[B, C, H, W]`` (H, W even) -> ``[B, 4C, H/2, W/2]`` as ``[LL, LH, HL, HH]``."""
    h, w = x.shape[-2:]
    if h % 2 or w % 2:
        raise ValueError(f"the Haar transform needs even height and width, got {h}x{w}")
    a, b = x[..., 0::2, 0::2], x[..., 0::2, 1::2]  # top-left, top-right of each 2x2 block
    c, d = x[..., 1::2, 0::2], x[..., 1::2, 1::2]  # bottom-left, bottom-right
    ll = (a + b + c + d) * 0.5
    lh = (b - a + d - c) * 0.5  # high-pass along x: responds to vertical edges
    hl = (c + d - a - b) * 0.5  # high-pass along y: horizontal edges
    hh = (a - b - c + d) * 0.5
    return torch.cat([ll, lh, hl, hh], dim=1)


def haar_idwt2d(coeffs: torch.Tensor) -> torch.Tensor:
    """Inverse of ``haar_dwt2d``. ``[B, 4C, h, w]`` -> ``[B, C, 2h, 2w]``."""
    bsz, c4, h, w = coeffs.shape
    if c4 % 4:
        raise ValueError(f"Haar coefficients need a multiple of 4 channels, got {c4}")
    ll, lh, hl, hh = coeffs.chunk(4, dim=1)
    # The synthesis matrix is the transpose of the (orthonormal, symmetric up to sign) analysis matrix.
    a = (ll - lh - hl + hh) * 0.5
    b = (ll + lh - hl - hh) * 0.5
    c = (ll - lh + hl - hh) * 0.5
    d = (ll + lh + hl + hh) * 0.5
    top = torch.stack([a, b], dim=-1)     # [B, C, h, w, 2]: columns interleaved
    bottom = torch.stack([c, d], dim=-1)
    out = torch.stack([top, bottom], dim=3)  # [B, C, h, 2, w, 2]: rows interleaved
    return out.reshape(bsz, c4 // 4, 2 * h, 2 * w)
