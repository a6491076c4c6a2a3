"""Exponential moving averages of weights (StyleGAN's ``G_ema``), for any pair of modules of one architecture."""
from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def update_ema(ema: nn.Module, source: nn.Module, beta: float) -> None:
    """``ema = beta * ema + (1 - beta) * source`` for parameters; buffers (w_avg, constant noise) are copied.

    Multi-tensor (``foreach``) ops: a handful of kernels for the whole network instead of two per tensor, which on a
    GPU is most of the EMA's cost. Same arithmetic as ``p.lerp(p_ema, beta)`` per tensor."""
    p_ema = list(ema.parameters())
    if p_ema:
        p_src = [p.detach() for p in source.parameters()]
        torch._foreach_copy_(p_ema, torch._foreach_lerp(p_src, p_ema, beta))
    b_ema = list(ema.buffers())
    if b_ema:
        torch._foreach_copy_(b_ema, list(source.buffers()))


def ema_beta(batch: int, cur_nimg: int, ema_kimg: float, ema_rampup: float | None) -> float:
    """StyleGAN's per-step EMA decay: half-life of ``ema_kimg`` thousand images (shortened early by the ramp-up)."""
    ema_nimg = ema_kimg * 1000
    if ema_rampup:
        ema_nimg = min(ema_nimg, cur_nimg * ema_rampup)
    return 0.5 ** (batch / max(ema_nimg, 1e-8))
