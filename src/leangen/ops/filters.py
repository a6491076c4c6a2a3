"""FIR filtering with up/down-sampling (``upfirdn2d``) in plain PyTorch, and the blur layers built on it.

Semantics follow the usual upfirdn: insert ``up - 1`` zeros between pixels, pad by ``pad`` (negative pads crop),
convolve with the (flipped) FIR kernel, keep every ``down``-th pixel.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
import torch.nn.functional as F


def make_kernel(taps: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """Separable 2-D FIR kernel from 1-D taps (outer product), normalized to sum 1. ``[k]`` -> ``[k, k]``."""
    k = torch.as_tensor(taps, dtype=torch.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    return k / k.sum()


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad, depthwise FIR filter, downsample. ``[B, C, H, W]`` -> ``[B, C, H', W']``.

    ``H' = (H * up + pad[0] + pad[1] - k + 1) // down`` (rounded up), same for W.
    """
    b, c, h, w = x.shape
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(b, c, h * up, w * up)
    p0, p1 = pad
    if p0 or p1:
        x = F.pad(x, [p0, p1, p0, p1])
    weight = kernel.flip([0, 1]).to(dtype=x.dtype, device=x.device)[None, None].expand(c, 1, *kernel.shape)
    return F.conv2d(x, weight, stride=down, groups=c)


class Blur(nn.Module):
    """Low-pass FIR filter with padding; ``upsample_factor`` compensates the energy lost to zero insertion."""

    def __init__(self, taps: Sequence[float], pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        kernel = make_kernel(taps) * (upsample_factor ** 2)
        self.register_buffer("kernel", kernel, persistent=False)
        self.pad = tuple(pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2x (or ``factor``x) FIR upsampling: ``[B, C, H, W]`` -> ``[B, C, H*f, W*f]``."""

    def __init__(self, taps: Sequence[float] = (1, 3, 3, 1), factor: int = 2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(taps) * (factor ** 2), persistent=False)
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)
