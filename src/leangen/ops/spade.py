"""Spatially-adaptive normalization (SPADE, Park et al. 2019) and its residual block.

``SPADE(x, seg)``: a parameter-free InstanceNorm of ``x``, modulated per pixel by ``1 + gamma(seg)`` and
``beta(seg)``, where gamma and beta come from a small conv net on the label map resized (nearest) to ``x``'s size.
The official default normalizes with synchronized BatchNorm; leangen uses InstanceNorm (the official
``spadeinstance3x3`` option), which does not depend on the batch and has no running statistics to average.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SPADE(nn.Module):
    """``x [B, C, H, W]``, ``seg [B, L, H', W']`` -> ``[B, C, H, W]``."""

    def __init__(self, channels: int, label_channels: int, hidden: int = 128) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.shared = nn.Sequential(nn.Conv2d(label_channels, hidden, 3, padding=1), nn.ReLU())
        self.gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        seg = F.interpolate(seg, size=x.shape[2:], mode="nearest")
        h = self.shared(seg)
        return self.norm(x) * (1 + self.gamma(h)) + self.beta(h)


class SPADEResBlock(nn.Module):
    """SPADE -> LeakyReLU(0.2) -> conv3x3, twice, plus a (learned when the width changes) shortcut; spectral norm on
    the convs. ``fin -> fout`` channels through ``min(fin, fout)``."""

    def __init__(self, fin: int, fout: int, label_channels: int, hidden: int = 128, spectral: bool = True) -> None:
        super().__init__()
        mid = min(fin, fout)
        sn = nn.utils.spectral_norm if spectral else (lambda m: m)
        self.conv_0 = sn(nn.Conv2d(fin, mid, 3, padding=1))
        self.conv_1 = sn(nn.Conv2d(mid, fout, 3, padding=1))
        self.norm_0 = SPADE(fin, label_channels, hidden)
        self.norm_1 = SPADE(mid, label_channels, hidden)
        self.learned_shortcut = fin != fout
        if self.learned_shortcut:
            self.conv_s = sn(nn.Conv2d(fin, fout, 1, bias=False))
            self.norm_s = SPADE(fin, label_channels, hidden)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        skip = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))
        return skip + dx
