"""Wavelet discriminator (SWAGAN, Gal et al. 2021; as used by StyleSwin and StyleNAT), with optional spectral norm.

Written from the reference notes (``pixel_stylenat.md`` §4.5), no official code reused:

- the image is Haar-decomposed first (``[B, 3, R, R]`` -> 12 channels at R/2, ``leangen.ops.wavelets``);
- at every feature resolution r (R/2 down to 8) a ``FromRGB`` (1x1 conv of the 12 wavelet channels) is added to the
  features, then a ``ConvBlock`` (3x3 conv, blurred stride-2 3x3 conv) halves r. From the second level on, FromRGB
  first brings the wavelet input down one level: inverse Haar -> [1,3,3,1] blur-downsample -> Haar;
- at 4x4 a last FromRGB, minibatch stddev (group 4), a 3x3 conv and two linear layers give one logit per image;
- ``spectral_norm=True`` (StyleNAT's ``sn: True``): every conv and linear layer is a plain ``nn.Conv2d``/``nn.Linear``
  under ``torch.nn.utils.parametrizations.spectral_norm`` (one power iteration per training forward; its ``u``/``v``
  vectors are buffers in the state dict, so resumed runs continue exactly). ``False`` uses StyleGAN2's equalized-lr
  layers instead (SN would fight the run-time weight scale).

Width at feature resolution r follows the StyleGAN2 table: the first level has ``channels[R]``, level r after a
ConvBlock has ``channels[r]``. Input ``[B, 3, R, R]`` in [-1, 1] -> logits ``[B, 1]``.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _sn

from leangen.models.base import Discriminator, register_model
from leangen.ops.bias_act import FusedLeakyReLU
from leangen.ops.channels import stylegan2_channels
from leangen.ops.conv_layer import ConvLayer
from leangen.ops.equalized import EqualLinear
from leangen.ops.filters import make_kernel, upfirdn2d
from leangen.ops.stddev import minibatch_stddev
from leangen.ops.wavelets import haar_dwt2d, haar_idwt2d


def _linear(cin: int, cout: int, sn: bool, activate: bool) -> nn.Module:
    """``[B, cin]`` -> ``[B, cout]``, with bias + leaky ReLU when ``activate``."""
    if not sn:
        return EqualLinear(cin, cout, activation="lrelu" if activate else None)
    if activate:
        return nn.Sequential(_sn(nn.Linear(cin, cout, bias=False)), FusedLeakyReLU(cout))
    return _sn(nn.Linear(cin, cout))


class FromRGB(nn.Module):
    """``(wavelets [B, 12, 2r, 2r] or [B, 12, r, r], features [B, C, r, r] | None) -> (wavelets at r, features)``.

    With ``downsample`` the wavelet input is first taken one level down (IWT, blur-downsample, DWT)."""

    def __init__(self, out_channels: int, sn: bool, downsample: bool, blur_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        self.downsample = downsample
        self.register_buffer("kernel", make_kernel(blur_kernel), persistent=False)
        p = len(blur_kernel) - 2
        self.pad = ((p + 1) // 2, p // 2)
        self.conv = ConvLayer(12, out_channels, 1, spectral_norm=sn)

    def forward(self, wav: torch.Tensor, skip: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.downsample:
            wav = haar_dwt2d(upfirdn2d(haar_idwt2d(wav), self.kernel, down=2, pad=self.pad))
        out = self.conv(wav)
        return wav, out if skip is None else out + skip


@register_model("wavelet-discriminator")
class WaveletDiscriminator(Discriminator):
    """SWAGAN/StyleSwin wavelet discriminator. ``[B, 3, R, R]`` in [-1, 1] -> ``[B, 1]`` logits."""

    def __init__(self, resolution: int = 256, channel_multiplier: int = 2, channel_base: int = 512,
                 max_channels: int = 512, spectral_norm: bool = True, stddev_group: int = 4, stddev_features: int = 1,
                 blur_kernel: tuple[int, ...] = (1, 3, 3, 1)):
        super().__init__()
        log_size = int(math.log2(resolution))
        if 2 ** log_size != resolution or resolution < 8:
            raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
        ch = stylegan2_channels(channel_multiplier, channel_base, max_channels)
        self.img_resolution = resolution
        self.from_rgbs = nn.ModuleList()
        self.convs = nn.ModuleList()
        c = ch[resolution]
        r = resolution // 2  # resolution of the first wavelet level
        while r > 4:
            self.from_rgbs.append(FromRGB(c, spectral_norm, downsample=r != resolution // 2, blur_kernel=blur_kernel))
            self.convs.append(nn.Sequential(
                ConvLayer(c, c, 3, spectral_norm=spectral_norm),
                ConvLayer(c, ch[r // 2], 3, downsample=True, blur_kernel=blur_kernel, spectral_norm=spectral_norm)))
            c, r = ch[r // 2], r // 2
        self.final_from_rgb = FromRGB(c, spectral_norm, downsample=resolution > 8, blur_kernel=blur_kernel)
        self.stddev_group, self.stddev_features = stddev_group, stddev_features
        self.final_conv = ConvLayer(c + stddev_features, ch[4], 3, spectral_norm=spectral_norm)
        self.final_linear = nn.Sequential(_linear(ch[4] * 16, ch[4], spectral_norm, True),
                                          _linear(ch[4], 1, spectral_norm, False))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        wav = haar_dwt2d(img)
        x: torch.Tensor | None = None
        for from_rgb, conv in zip(self.from_rgbs, self.convs):
            wav, x = from_rgb(wav, x)
            x = conv(x)
        _, x = self.final_from_rgb(wav, x)
        x = self.final_conv(minibatch_stddev(x, self.stddev_group, self.stddev_features))
        return self.final_linear(x.flatten(1))
