"""The pix2pix U-Net generator (Isola et al. 2017; ``unet_256``: 8 stride-2 levels, 256 -> 1 -> 256).

Encoder level i: LeakyReLU(0.2) (not before the first), conv 4x4 stride 2, norm (not on the first nor the innermost).
Decoder level i: ReLU, transposed conv 4x4 stride 2, norm (not on the outermost, which ends in tanh), optional
dropout; each decoder output is concatenated with the encoder feature of the same resolution (the skip). Widths
``ngf * (1, 2, 4, 8, 8, ...)``. With BatchNorm the convs have no bias (the reference does the same); with
InstanceNorm they do. pix2pix keeps dropout on at test time as its noise source; here ``dropout`` defaults to 0 so
the translator is deterministic.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from leangen.models.base import Translator, register_model
from leangen.ops.labels import one_hot_labels
from leangen.ops.prunable import register_translator_presets


def _norm(kind: str, ch: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(ch)
    if kind == "instance":
        return nn.InstanceNorm2d(ch)
    raise ValueError(f"unknown norm {kind!r} (batch or instance)")


@register_model("unet-generator")
class UnetGenerator(Translator):
    """``labels int [B, R, R]`` (or images ``[B, in_channels, R, R]``) -> image ``[B, 3, R, R]`` in (-1, 1)."""

    def __init__(self, num_classes: int = 9, resolution: int = 256, ngf: int = 64, num_downs: int = 8,
                 norm: str = "batch", dropout: float = 0.0, in_channels: int | None = None) -> None:
        super().__init__()
        if resolution % (2 ** num_downs):
            raise ValueError(f"resolution {resolution} must be divisible by 2**num_downs = {2 ** num_downs}")
        if num_downs < 2:
            raise ValueError("num_downs must be >= 2")
        self.num_classes, self.img_resolution, self.in_channels = num_classes, resolution, in_channels
        bias = norm != "batch"
        ch = [ngf * min(2 ** i, 8) for i in range(num_downs)]
        cin = [in_channels or num_classes] + ch[:-1]
        self.down = nn.ModuleList(nn.Conv2d(cin[i], ch[i], 4, 2, 1, bias=bias) for i in range(num_downs))
        self.down_norm = nn.ModuleList(_norm(norm, ch[i]) if 0 < i < num_downs - 1 else nn.Identity()
                                       for i in range(num_downs))
        # Decoder level i maps (skip-concatenated) features back to the width entering encoder level i.
        up_in = [ch[i] * (1 if i == num_downs - 1 else 2) for i in range(num_downs)]
        up_out = [3] + ch[:-1]
        self.up = nn.ModuleList(nn.ConvTranspose2d(up_in[i], up_out[i], 4, 2, 1, bias=bias if i else True)
                                for i in range(num_downs))
        self.up_norm = nn.ModuleList(_norm(norm, up_out[i]) if i else nn.Identity() for i in range(num_downs))
        self.dropout = float(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Label map ``int [B, H, W]`` or image ``[B, in_channels, H, W]`` -> ``[B, 3, H, W]`` (tanh)."""
        h = one_hot_labels(x, self.num_classes) if x.dim() == 3 else x.float()
        skips = []
        for i, (conv, norm) in enumerate(zip(self.down, self.down_norm)):
            h = norm(conv(h if i == 0 else F.leaky_relu(h, 0.2)))
            skips.append(h)
        n = len(self.down)
        for i in reversed(range(n)):
            if i < n - 1:
                h = torch.cat([skips[i], h], dim=1)
            h = self.up_norm[i](self.up[i](F.relu(h)))
            if 0 < i and self.dropout > 0 and i >= n - 4:  # the three 8*ngf decoder levels below the innermost
                h = F.dropout(h, self.dropout, self.training)
        return torch.tanh(h)

    def example_inputs(self, batch: int) -> tuple[torch.Tensor]:
        if self.in_channels is None:
            return super().example_inputs(batch)
        res = self.img_resolution
        return (torch.randn(batch, self.in_channels, res, res, generator=torch.Generator().manual_seed(0)),)


def _register_presets() -> None:
    register_translator_presets(
        "unet-256", "unet-generator", dict(num_classes=9, resolution=256, ngf=64, num_downs=8),
        paper={"source": "pix2pix unet_256 layout (BatchNorm); 54,413,955 parameters with 3-channel image input"},
        description="pix2pix U-Net generator (8 levels, BatchNorm, skip concatenation) at 256x256",
        prunable=False)  # no channel_groups yet: skip concatenations need offset-aware slices
    register_translator_presets(
        "unet-tiny32", "unet-generator", dict(num_classes=9, resolution=32, ngf=8, num_downs=5, norm="instance"),
        tiny=True, description="U-Net generator (ngf 8, 5 levels, InstanceNorm) at 32x32 for CPU tests", prunable=False)


_register_presets()
