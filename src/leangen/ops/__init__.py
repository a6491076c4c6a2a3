"""Shared building blocks, pure PyTorch (every op runs on CPU and exports to ONNX).

- ``bias_act``: bias + leaky ReLU with StyleGAN's sqrt(2) gain
- ``equalized``: equalized-learning-rate linear / conv layers
- ``filters``: FIR up/down-sampling (``upfirdn2d``), ``Blur``, ``Upsample``
- ``modulated``: modulated conv with demodulation, noise injection, ``StyledConv``, ``ToRGB``, and the per-sample
  weight of a 1x1 modulated conv (``modulated_fc_weight``) for pixel-major matmuls
- ``conv_layer``: ``ConvLayer``, StyleGAN2's unmodulated [blur + stride-2] conv + bias + leaky ReLU
- ``channels``: the StyleGAN2 channel-width table
- ``mapping``: the 8-layer mapping network z -> w with a tracked w average for truncation
- ``coords``: coordinate grids and learned Fourier features
- ``fold``: pixel folding / unfolding (space-to-depth in PixelFolder's channel order)
- ``neighborhood``: 2-D (dilated) neighborhood attention with a relative bias, NATTEN's semantics, several backends
  (``neighborhood_tiled``, ``neighborhood_flex``), and the NA / Hydra-NA / full relative-bias attention modules
"""
from leangen.ops.channels import stylegan2_channels
from leangen.ops.conv_layer import ConvLayer
from leangen.ops.coords import LearnedFourierFeatures, coordinate_grid
from leangen.ops.fold import fold2x, unfold2x
from leangen.ops.bias_act import FusedLeakyReLU, fused_leaky_relu
from leangen.ops.equalized import EqualConv2d, EqualLinear
from leangen.ops.filters import Blur, Upsample, make_kernel, upfirdn2d
from leangen.ops.mapping import MappingNetwork, PixelNorm
from leangen.ops.modulated import (ConstantInput, ModulatedConv2d, NoiseInjection, StyledConv, ToRGB,
                                  modulated_fc_weight)

__all__ = [
    "FusedLeakyReLU", "fused_leaky_relu", "EqualConv2d", "EqualLinear", "Blur", "Upsample", "make_kernel",
    "upfirdn2d", "MappingNetwork", "PixelNorm", "ConstantInput", "ModulatedConv2d", "NoiseInjection", "StyledConv",
    "ToRGB", "modulated_fc_weight", "ConvLayer", "stylegan2_channels", "LearnedFourierFeatures", "coordinate_grid",
    "fold2x", "unfold2x",
]
