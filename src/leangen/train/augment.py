"""Differentiable augmentation for data-efficient GAN training (DiffAugment, Zhao et al., NeurIPS 2020).

The same random transform family is applied to real and generated images before the discriminator, and gradients
flow through it to the generator. Policies: ``flip`` (random horizontal flip, for consistency regularization),
``color`` (brightness, saturation, contrast), ``translation`` (shift by up to 1/8 of the image, zero fill),
``cutout`` (zero a square of half the image side). Randomness comes from the
global torch RNG on the images' device, so a resumed run that restores RNG states draws the same transforms.
Images are float ``[B, C, H, W]`` in [-1, 1].
"""
from __future__ import annotations

from typing import Callable

import torch

POLICIES = ("flip", "color", "translation", "cutout")


def parse_policy(spec: str | None) -> list[str]:
    """``"color,translation"`` -> ``["color", "translation"]``; ``""``/``"none"``/None -> []."""
    if spec is None:
        return []
    names = [p.strip() for p in str(spec).replace("+", ",").split(",") if p.strip()]
    if names in (["none"], ["None"]):
        return []
    for name in names:
        if name not in POLICIES:
            raise ValueError(f"unknown DiffAugment policy {name!r} (known: {', '.join(POLICIES)}, or none)")
    return names


def _rand(x: torch.Tensor) -> torch.Tensor:
    """One uniform [0, 1) number per sample, shaped to broadcast over [B, C, H, W]."""
    return torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype)


def brightness(x: torch.Tensor) -> torch.Tensor:
    return x + (_rand(x) - 0.5)


def saturation(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (_rand(x) * 2) + mean


def contrast(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand(x) + 0.5) + mean


def flip(x: torch.Tensor) -> torch.Tensor:
    """Mirror each sample left-right with probability 1/2."""
    return torch.where(_rand(x) < 0.5, x.flip(3), x)


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift every sample by its own integer offset in [-ratio*size, ratio*size]; uncovered pixels become 0."""
    b, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sy, sy + 1, (b, 1, 1), device=x.device)
    dx = torch.randint(-sx, sx + 1, (b, 1, 1), device=x.device)
    ys = torch.arange(h, device=x.device).view(1, h, 1) - dy       # source row of each output row
    xs = torch.arange(w, device=x.device).view(1, 1, w) - dx
    valid = ((ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)).unsqueeze(1)
    flat = (ys.clamp(0, h - 1) * w + xs.clamp(0, w - 1)).reshape(b, 1, h * w).expand(-1, x.shape[1], -1)
    out = x.reshape(b, x.shape[1], h * w).gather(2, flat).reshape_as(x)  # gather: differentiable w.r.t. x
    return out * valid.to(x.dtype)


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero one square of side ``ratio*size`` per sample, centred anywhere (it may hang over the border)."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), device=x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), device=x.device)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (ys >= cy - ch // 2) & (ys < cy - ch // 2 + ch) & (xs >= cx - cw // 2) & (xs < cx - cw // 2 + cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


_OPS: dict[str, list[Callable[[torch.Tensor], torch.Tensor]]] = {
    "flip": [flip],
    "color": [brightness, saturation, contrast],
    "translation": [translation],
    "cutout": [cutout],
}


class DiffAugment(torch.nn.Module):
    """Apply the listed policies in order. No parameters and no state beyond the global RNG."""

    def __init__(self, policy: str | list[str] | None = "color,translation,cutout"):
        super().__init__()
        self.policy = parse_policy(policy) if not isinstance(policy, list) else [p for p in policy]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.policy:
            for op in _OPS[name]:
                x = op(x)
        return x.contiguous()

    def extra_repr(self) -> str:
        return ",".join(self.policy) or "none"
