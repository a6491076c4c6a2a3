"""Exponential moving averages of weights (StyleGAN's ``G_ema``), for any pair of modules of one architecture."""
from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def update_ema(ema: nn.Module, source: nn.Module, beta: float) -> None:
    """``ema = beta * ema + (1 - beta) * source`` for parameters; buffers (w_avg, constant noise) are copied."""
    for p_ema, p in zip(ema.parameters(), source.parameters()):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(ema.buffers(), source.buffers()):
        b_ema.copy_(b)


def ema_beta(batch: int, cur_nimg: int, ema_kimg: float, ema_rampup: float | None) -> float:
    """StyleGAN's per-step EMA decay: half-life of ``ema_kimg`` thousand images (shortened early by the ramp-up)."""
    ema_nimg = ema_kimg * 1000
    if ema_rampup:
        ema_nimg = min(ema_nimg, cur_nimg * ema_rampup)
    return 0.5 ** (batch / max(ema_nimg, 1e-8))
