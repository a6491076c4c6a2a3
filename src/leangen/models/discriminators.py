"""StyleGAN2 residual discriminator, shared by every unconditional GAN in leangen (StyleGAN2, CIPS, PixelFolder).

1x1 conv from RGB, residual blocks with blurred stride-2 downsampling down to 4x4, minibatch standard deviation,
a 3x3 conv and two linear layers. ``[B, 3, R, R]`` -> logits ``[B, 1]``.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from leangen.models.base import Discriminator, register_model
from leangen.ops.channels import stylegan2_channels
from leangen.ops.conv_layer import ConvLayer
from leangen.ops.equalized import EqualLinear
from leangen.ops.stddev import minibatch_stddev


class ResBlock(nn.Module):
    """Two 3x3 convs (the second downsampling) plus a 1x1 downsampling skip, summed and scaled by 1/sqrt(2)."""

    def __init__(self, in_channels: int, out_channels: int, blur_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=True, blur_kernel=blur_kernel)
        self.skip = ConvLayer(in_channels, out_channels, 1, downsample=True, blur_kernel=blur_kernel, bias=False,
                              activate=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) * (1 / math.sqrt(2))


@register_model("stylegan2-discriminator")
class StyleGAN2Discriminator(Discriminator):
    """Residual discriminator with minibatch-stddev. ``[B, 3, R, R]`` in [-1, 1] -> ``[B, 1]`` logits."""

    def __init__(self, resolution: int = 256, channel_multiplier: int = 2, channel_base: int = 512,
                 max_channels: int = 512, in_channels: int = 3, stddev_group: int = 4, stddev_features: int = 1,
                 blur_kernel: tuple[int, ...] = (1, 3, 3, 1)):
        super().__init__()
        ch = stylegan2_channels(channel_multiplier, channel_base, max_channels)
        log_size = int(math.log2(resolution))
        if 2 ** log_size != resolution or resolution < 8:
            raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
        self.img_resolution, self.img_channels = resolution, in_channels
        blocks: list[nn.Module] = [ConvLayer(in_channels, ch[resolution], 1)]
        c = ch[resolution]
        for i in range(log_size, 2, -1):
            out_c = ch[2 ** (i - 1)]
            blocks.append(ResBlock(c, out_c, blur_kernel))
            c = out_c
        self.convs = nn.Sequential(*blocks)
        self.stddev_group, self.stddev_features = stddev_group, stddev_features
        self.final_conv = ConvLayer(c + stddev_features, ch[4], 3)
        self.final_linear = nn.Sequential(EqualLinear(ch[4] * 16, ch[4], activation="lrelu"), EqualLinear(ch[4], 1))

    def minibatch_stddev(self, x: torch.Tensor) -> torch.Tensor:
        """Append the std over groups of samples, averaged over channels and pixels, as extra feature map(s)."""
        return minibatch_stddev(x, self.stddev_group, self.stddev_features)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = self.convs(img)
        x = self.final_conv(self.minibatch_stddev(x))
        return self.final_linear(x.flatten(1))
