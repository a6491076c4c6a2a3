"""Style modulation blocks: modulated conv with demodulation, noise injection, styled conv and skip ToRGB.

``modulated_fc_weight`` builds the per-sample weight of a 1x1 modulated conv, so per-pixel (1x1) layers can run as one
matrix product per sample on pixel-major activations instead of a conv.

``ModulatedConv2d`` has two numerically equivalent paths, chosen by ``impl`` (per layer, per call, or for a whole
model with :func:`set_modconv_impl`):

- ``"scaled"``: scale the *input* channels by the style, run one ordinary (shared-weight) conv, then scale the output
  channels by the demodulation factor. One weight for the whole batch, any batch size, channels-last, bf16,
  ``torch.compile`` and ONNX (the form StyleGAN2-ADA trains with, since GPU grouped convs are slow to differentiate).
- ``"grouped"``: build per-sample weights and run one grouped conv over the batch (the formulation of the StyleGAN2
  paper). At batch 1 this is one ordinary conv with a modulated weight and no extra passes over the activations.
- ``"auto"`` (default): ``grouped`` at batch 1 without autograd, ``scaled`` otherwise. On a 2-core CPU the two are
  within noise of each other on whole StyleGAN2-256 and PixelFolder-256 generators at batch 1 and 4
  (``benchmarks/results/modconv_paths-cpu.md``); whether grouped convs with one group per sample keep up at batch 32
  on a GPU is not measured yet (``benchmarks/fastpath_equality.py --device cuda`` times both). With autograd the
  scaled path also gives the more accurate gradients (see ``forward``).

Both are autocast-friendly: the demodulation factor (a ``[B, in] x [in, out]`` product) is computed in fp32 outside
autocast, the convolution itself runs in the autocast dtype.
"""
from __future__ import annotations

import contextlib
import math
from typing import Literal, Sequence

import torch
from torch import nn
import torch.nn.functional as F

from leangen.ops.bias_act import FusedLeakyReLU
from leangen.ops.equalized import EqualLinear
from leangen.ops.filters import Blur, Upsample

NoiseMode = Literal["random", "const", "none"]
ModConvImpl = Literal["auto", "scaled", "grouped"]
MODCONV_IMPLS: tuple[str, ...] = ("auto", "scaled", "grouped")


class ModulatedConv2d(nn.Module):
    """Conv whose input channels are scaled by an affine function of ``w``, with optional demodulation.

    ``x [B, in, H, W]``, ``w [B, style_dim]`` -> ``[B, out, H, W]`` (or ``[B, out, 2H, 2W]`` with ``upsample``).
    Upsampling is a stride-2 transposed conv followed by a [1,3,3,1] blur, so its multiply-adds are those of the
    input resolution. ``fan_in_channels`` (default ``in_channels``) sets the equalized-lr gain
    ``1/sqrt(fan_in_channels * k^2)``: a pruned copy keeps its original's gain and so computes the same function.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int, demodulate: bool = True,
                 upsample: bool = False, blur_kernel: Sequence[float] = (1, 3, 3, 1), impl: ModConvImpl = "auto",
                 fan_in_channels: int | None = None):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.scale = 1.0 / math.sqrt((fan_in_channels or in_channels) * kernel_size ** 2)
        self.padding = kernel_size // 2
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1.0)
        self.demodulate = demodulate
        self.upsample = upsample
        if impl not in MODCONV_IMPLS:
            raise ValueError(f"unknown modulated-conv impl {impl!r}; expected one of {', '.join(MODCONV_IMPLS)}")
        self.impl: ModConvImpl = impl
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)

    def forward(self, x: torch.Tensor, w: torch.Tensor, impl: ModConvImpl | None = None,
                style_gain: torch.Tensor | None = None) -> torch.Tensor:
        """``impl`` overrides the layer's own choice for this call (see the module docstring). ``style_gain [in]``
        multiplies the styles (a pruning gate: a zero removes that input channel, demodulation included)."""
        styles = self.modulation(w)  # [B, in]
        if style_gain is not None:
            styles = styles * style_gain.to(styles.dtype)
        weight = self.weight[0] * self.scale  # [out, in, k, k]
        impl = impl or self.impl
        # auto: grouped only for batch-1 inference; with autograd the scaled path's gradients are also the more
        # accurate ones (per-sample-weight backward is ~1e-4 off fp64 at 512 channels on oneDNN, scaled ~1e-6)
        if impl == "grouped" or (impl == "auto" and x.shape[0] == 1 and not torch.is_grad_enabled()):
            return self._forward_grouped(x, styles, weight)
        x = x * styles.to(x.dtype)[:, :, None, None]
        if self.upsample:
            out = self.blur(F.conv_transpose2d(x, weight.transpose(0, 1).to(x.dtype), stride=2))
        else:
            out = F.conv2d(x, weight.to(x.dtype), padding=self.padding)
        if self.demodulate:
            out = out * demodulation(styles, weight).to(out.dtype)[:, :, None, None]
        return out

    def _forward_grouped(self, x: torch.Tensor, styles: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        b, c, h, w_ = x.shape
        dt = torch.promote_types(weight.dtype, torch.float32)  # fp32 (fp64 stays) under autocast or bf16 weights
        wb = weight.to(dt)[None] * styles.to(dt)[:, None, :, None, None]  # [B, out, in, k, k]
        if self.demodulate:
            # the same [B, in] x [in, out] product as the scaled path (one pass less over the weight, and the same
            # multiply-adds for the profiler whichever path runs)
            wb = wb * demodulation(styles, weight)[:, :, None, None, None]
        wb = wb.to(x.dtype)
        x = x.reshape(1, b * c, h, w_)  # a view at batch 1 (channels-last strides kept)
        k = self.kernel_size
        if self.upsample:
            wt = wb.transpose(1, 2).reshape(b * self.in_channels, self.out_channels, k, k)
            out = F.conv_transpose2d(x, wt, stride=2, groups=b)
            out = out.reshape(b, self.out_channels, out.shape[-2], out.shape[-1])
            return self.blur(out)
        out = F.conv2d(x, wb.reshape(b * self.out_channels, self.in_channels, k, k), padding=self.padding, groups=b)
        return out.reshape(b, self.out_channels, h, w_)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"demodulate={self.demodulate}, upsample={self.upsample}, impl={self.impl}")


def demodulation(styles: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``[B, out]`` fp32 factors ``rsqrt(sum_{i,k} (W[o, i, k] * s[b, i])^2 + 1e-8)`` for styles ``[B, in]`` and a
    scaled weight ``[out, in, k, k]``.

    ``s^2 @ sum_k W^2``: a ``[B, in] x [in, out]`` product instead of a ``[B, out, in, k, k]`` tensor; outside autocast
    (in fp32) because a bf16 sum over ``in * k * k`` terms would round the normalization visibly.
    """
    dt = torch.promote_types(weight.dtype, torch.float32)
    device_type = styles.device.type
    autocasting = device_type in ("cpu", "cuda") and torch.is_autocast_enabled(device_type)  # meta has no autocast
    with torch.autocast(device_type, enabled=False) if autocasting else contextlib.nullcontext():
        return torch.rsqrt(styles.to(dt).square() @ weight.to(dt).square().sum(dim=(2, 3)).t() + 1e-8)


def set_modconv_impl(module: nn.Module, impl: ModConvImpl) -> int:
    """Set ``impl`` (``auto``, ``scaled`` or ``grouped``) on every ``ModulatedConv2d`` inside ``module``; returns how
    many layers were set. Values do not depend on it (within fp32 rounding); speed does."""
    if impl not in MODCONV_IMPLS:
        raise ValueError(f"unknown modulated-conv impl {impl!r}; expected one of {', '.join(MODCONV_IMPLS)}")
    layers = [m for m in module.modules() if isinstance(m, ModulatedConv2d)]
    for m in layers:
        m.impl = impl
    return len(layers)


def modulated_fc_weight(conv: ModulatedConv2d, w: torch.Tensor) -> torch.Tensor:
    """Per-sample weight of a 1x1 ``ModulatedConv2d``, transposed for ``x @ W``: ``[B, in, out]``.

    ``W_b[o, i] = scale * W[o, i] * s_b[i] * d_b[o]`` with styles ``s = modulation(w)`` and demodulation
    ``d_b[o] = rsqrt(sum_i (scale * W[o, i] * s_b[i])^2 + 1e-8)`` — exactly ``ModulatedConv2d``'s math, built on the
    small weight instead of scaling the (large) activations twice.
    """
    if conv.kernel_size != 1 or conv.upsample:
        raise ValueError("modulated_fc_weight needs a 1x1 ModulatedConv2d without upsampling")
    styles = conv.modulation(w)  # [B, in]
    weight = conv.weight[0, :, :, 0, 0] * conv.scale  # [out, in]
    wb = weight[None] * styles[:, None, :]
    if conv.demodulate:
        wb = wb * torch.rsqrt(wb.square().sum(dim=2, keepdim=True) + 1e-8)
    return wb.transpose(1, 2)


class NoiseInjection(nn.Module):
    """Adds ``weight * noise`` with per-pixel N(0, 1) noise shared across channels.

    ``noise_mode``: ``random`` draws fresh noise, ``const`` uses a fixed buffer made at construction (when
    ``resolution`` is given and the input has that size; otherwise no noise), ``none`` adds nothing.
    """

    def __init__(self, resolution: int | None = None):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        if resolution is not None:
            self.register_buffer("noise_const", torch.randn(1, 1, resolution, resolution))
        else:
            self.noise_const = None

    def forward(self, x: torch.Tensor, noise_mode: NoiseMode = "random") -> torch.Tensor:
        if noise_mode == "none":
            return x
        if noise_mode == "const":
            nc = self.noise_const
            if nc is None or nc.shape[-2:] != x.shape[-2:]:
                return x
            return x + self.weight.to(x.dtype) * nc.to(x.dtype)
        noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
        return x + self.weight.to(x.dtype) * noise


class StyledConv(nn.Module):
    """Modulated conv -> noise -> bias + leaky ReLU. ``[B, in, H, W]`` -> ``[B, out, H', W']``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int, upsample: bool = False,
                 demodulate: bool = True, blur_kernel: Sequence[float] = (1, 3, 3, 1), resolution: int | None = None,
                 fan_in_channels: int | None = None):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, kernel_size, style_dim, demodulate=demodulate,
                                    upsample=upsample, blur_kernel=blur_kernel, fan_in_channels=fan_in_channels)
        self.noise = NoiseInjection(resolution)
        self.activate = FusedLeakyReLU(out_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: NoiseMode = "random",
                style_gain: torch.Tensor | None = None) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, w, style_gain=style_gain), noise_mode))


class ToRGB(nn.Module):
    """Modulated 1x1 conv to RGB (no demodulation) + bias, added to the (upsampled) running RGB skip image."""

    def __init__(self, in_channels: int, style_dim: int, upsample: bool = True, out_channels: int = 3,
                 blur_kernel: Sequence[float] = (1, 3, 3, 1), fan_in_channels: int | None = None):
        super().__init__()
        self.upsample = Upsample(blur_kernel) if upsample else None
        self.conv = ModulatedConv2d(in_channels, out_channels, 1, style_dim, demodulate=False,
                                    fan_in_channels=fan_in_channels)
        self.bias = nn.Parameter(torch.zeros(1, out_channels, 1, 1))

    def forward(self, x: torch.Tensor, w: torch.Tensor, skip: torch.Tensor | None = None,
                style_gain: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, w, style_gain=style_gain) + self.bias.to(x.dtype)
        if skip is not None:
            if self.upsample is not None:
                skip = self.upsample(skip)
            out = out + skip
        return out


class ConstantInput(nn.Module):
    """Learned constant ``[1, C, size, size]``, repeated over the batch."""

    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)
