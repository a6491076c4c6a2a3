"""``ConvLayer``: StyleGAN2's unmodulated conv block ([blur + stride 2] equalized conv, bias, leaky ReLU).

Used by the residual and wavelet discriminators and by PixelFolder's positional branch. It is an ``nn.Sequential``,
so its state-dict keys are positional (``0.weight``, ``1.bias``, ...) as in the official code.
"""
from __future__ import annotations

from typing import Sequence

from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from leangen.ops.bias_act import FusedLeakyReLU
from leangen.ops.equalized import EqualConv2d
from leangen.ops.filters import Blur


class ConvLayer(nn.Sequential):
    """[blur + stride-2] equalized conv, then bias + leaky ReLU (or a plain bias when ``activate=False``).

    ``[B, in, H, W]`` -> ``[B, out, H, W]`` (``[B, out, H/2, W/2]`` with ``downsample``). ``spectral_norm`` swaps the
    equalized conv for a plain ``nn.Conv2d`` under spectral normalization (SN would fight the run-time weight scale).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, downsample: bool = False,
                 blur_kernel: Sequence[float] = (1, 3, 3, 1), bias: bool = True, activate: bool = True,
                 spectral_norm: bool = False):
        layers: list[nn.Module] = []
        if downsample:
            p = (len(blur_kernel) - 2) + (kernel_size - 1)
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        conv_bias = bias and not activate  # with an activation the bias lives in FusedLeakyReLU
        if spectral_norm:
            layers.append(_spectral_norm(nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                                                   padding=padding, bias=conv_bias)))
        else:
            layers.append(EqualConv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                                      bias=conv_bias))
        if activate:
            layers.append(FusedLeakyReLU(out_channels, bias=bias))
        super().__init__(*layers)
