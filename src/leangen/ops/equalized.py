"""Equalized learning rate layers: weights are stored at unit variance and scaled at run time (Karras et al. 2018)."""
from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from leangen.ops.bias_act import fused_leaky_relu


class EqualLinear(nn.Module):
    """Linear layer with run-time weight scaling ``1/sqrt(in) * lr_mul``.

    ``lr_mul`` < 1 slows the layer down under Adam (the mapping network uses 0.01). ``activation='lrelu'`` applies
    bias + leaky ReLU * sqrt(2). Input ``[..., in_dim]`` -> ``[..., out_dim]``.
    """

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: str | None = None):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.scale = (1.0 / math.sqrt(in_dim)) * lr_mul
        self.lr_mul = lr_mul
        if activation not in (None, "linear", "lrelu"):
            raise ValueError(f"unsupported activation {activation!r}")
        self.activation = activation if activation != "linear" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.activation == "lrelu":
            out = F.linear(x, self.weight * self.scale)
            return fused_leaky_relu(out, bias) if out.ndim == 2 else fused_leaky_relu(out.movedim(-1, 1), bias).movedim(1, -1)
        return F.linear(x, self.weight * self.scale, bias)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}, lr_mul={self.lr_mul}, activation={self.activation}"


class EqualConv2d(nn.Module):
    """Conv2d with run-time weight scaling ``1/sqrt(in * k * k)``. ``[B, in, H, W]`` -> ``[B, out, H', W']``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size ** 2)
        self.stride = stride
        self.padding = padding
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"{i}, {o}, kernel_size={k}, stride={self.stride}, padding={self.padding}"
