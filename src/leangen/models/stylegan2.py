"""StyleGAN2 generator (Karras et al. 2020, config F with skip ToRGB) in pure PyTorch.

Layout at resolution R (``log2 R = L``): learned 4x4 constant -> styled 3x3 conv -> ToRGB, then for every
resolution 8..R an upsampling styled conv, a styled conv and a ToRGB whose output is added to the upsampled skip
image. ``num_ws = 2L - 2`` (14 at 256). Channel widths follow the reference table with a channel multiplier.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from leangen.models.base import StyleGenerator, register_model
from leangen.ops.channels import stylegan2_channels
from leangen.ops.modulated import ConstantInput, NoiseMode, StyledConv, ToRGB


@register_model("stylegan2-generator")
class StyleGAN2Generator(StyleGenerator):
    """``z [B, z_dim]`` -> image ``[B, 3, R, R]`` in about [-1, 1]."""

    def __init__(self, resolution: int = 256, z_dim: int = 512, w_dim: int = 512, mapping_layers: int = 8,
                 mapping_lr_mul: float = 0.01, channel_multiplier: int = 2, channel_base: int = 512,
                 max_channels: int = 512, blur_kernel: tuple[int, ...] = (1, 3, 3, 1)):
        super().__init__()
        log_size = int(math.log2(resolution))
        if 2 ** log_size != resolution or resolution < 8:
            raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
        self._init_mapping(z_dim, w_dim, mapping_layers, mapping_lr_mul, num_ws=2 * log_size - 2, resolution=resolution)
        ch = stylegan2_channels(channel_multiplier, channel_base, max_channels)
        self.input = ConstantInput(ch[4], 4)
        self.conv1 = StyledConv(ch[4], ch[4], 3, w_dim, blur_kernel=blur_kernel, resolution=4)
        self.to_rgb1 = ToRGB(ch[4], w_dim, upsample=False)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        in_ch = ch[4]
        for i in range(3, log_size + 1):
            res = 2 ** i
            out_ch = ch[res]
            self.convs.append(StyledConv(in_ch, out_ch, 3, w_dim, upsample=True, blur_kernel=blur_kernel, resolution=res))
            self.convs.append(StyledConv(out_ch, out_ch, 3, w_dim, blur_kernel=blur_kernel, resolution=res))
            self.to_rgbs.append(ToRGB(out_ch, w_dim, blur_kernel=blur_kernel))
            in_ch = out_ch

    def synthesis(self, ws: torch.Tensor, noise_mode: NoiseMode = "random", **_: Any) -> torch.Tensor:
        """``ws [B, num_ws, w_dim]`` -> ``[B, 3, R, R]``."""
        x = self.input(ws.shape[0])
        x = self.conv1(x, ws[:, 0], noise_mode)
        skip = self.to_rgb1(x, ws[:, 1])
        i = 1
        for up_conv, conv, to_rgb in zip(self.convs[::2], self.convs[1::2], self.to_rgbs):
            x = up_conv(x, ws[:, i], noise_mode)
            x = conv(x, ws[:, i + 1], noise_mode)
            skip = to_rgb(x, ws[:, i + 2], skip)
            i += 2
        return skip


# ----------------------------------------------------------------------------------------------------------------------
# Presets
