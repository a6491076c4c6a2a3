"""Minibatch standard deviation (Karras et al. 2018), the last-stage feature of StyleGAN2-style discriminators."""
from __future__ import annotations

import torch


def minibatch_stddev(x: torch.Tensor, group: int = 4, features: int = 1) -> torch.Tensor:
    """Append the std over groups of samples, averaged over channels and pixels, as ``features`` extra maps.

    ``[B, C, H, W]`` -> ``[B, C + features, H, W]``. A batch not divisible by the group size falls back to groups of
    one (std 0) rather than failing, so an uneven last batch still runs.
    """
    b, c, h, w = x.shape
    g = min(b, group)
    if b % g:
        g = 1
    f = features
    y = x.reshape(g, -1, f, c // f, h, w)
    y = torch.sqrt(y.float().var(0, unbiased=False) + 1e-8).mean(dim=(2, 3, 4)).to(x.dtype)  # [B/g, f]
    y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)
    return torch.cat([x, y], dim=1)
