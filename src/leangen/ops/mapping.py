"""Mapping network z -> w (StyleGAN): pixel norm, then MLP layers with a low learning-rate multiplier."""
from __future__ import annotations

import torch
from torch import nn

from leangen.ops.equalized import EqualLinear


class PixelNorm(nn.Module):
    """Normalize each vector to unit root-mean-square along dim 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x * x, dim=1, keepdim=True) + 1e-8)


class MappingNetwork(nn.Module):
    """``[B, z_dim]`` -> ``[B, w_dim]``. Keeps a running average of w (buffer ``w_avg``) for the truncation trick.

    ``w_avg`` is updated only when ``update_w_avg=True`` is passed (the trainer does it on its generator), with
    decay ``w_avg_beta`` per call.
    """

    def __init__(self, z_dim: int = 512, w_dim: int = 512, num_layers: int = 8, lr_mul: float = 0.01,
                 w_avg_beta: float = 0.995):
        super().__init__()
        self.z_dim, self.w_dim = z_dim, w_dim
        layers: list[nn.Module] = [PixelNorm()]
        for i in range(num_layers):
            layers.append(EqualLinear(z_dim if i == 0 else w_dim, w_dim, lr_mul=lr_mul, activation="lrelu"))
        self.net = nn.Sequential(*layers)
        self.w_avg_beta = w_avg_beta
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0, update_w_avg: bool = False) -> torch.Tensor:
        w = self.net(z)
        if update_w_avg:
            with torch.no_grad():
                self.w_avg.copy_(w.detach().float().mean(0).lerp(self.w_avg, self.w_avg_beta))
        if truncation_psi != 1.0:
            w = self.w_avg.to(w.dtype).lerp(w, truncation_psi)
        return w
