"""The independent-pixel likelihood model: one learned categorical distribution per sub-pixel.

``p(x) = prod_{c,i,j} softmax(logits[c, i, j])[x_cij]``. It ignores every dependency between pixels, so its
bits/dim is the entropy floor any autoregressive model has to beat; it is also the smallest model that exercises
the likelihood machinery end to end (exact bits/dim, sampling, snapshots).
"""
from __future__ import annotations



import torch
import torch.nn.functional as F
from torch import nn

from leangen.models.base import LikelihoodModel, register_model


@register_model("independent-pixels")
class IndependentPixelModel(LikelihoodModel):
    """Per-sub-pixel categorical over ``2**bits`` values. ``log_prob``: uint8 ``[B, C, R, R]`` -> nats ``[B]``."""

    def __init__(self, resolution: int = 32, channels: int = 3, bits: int = 8) -> None:
        super().__init__()
        if not 1 <= bits <= 8:
            raise ValueError(f"bits must be in 1..8, got {bits}")
        self.img_resolution, self.img_channels, self.bits = resolution, channels, bits
        self.logits = nn.Parameter(torch.zeros(channels, resolution, resolution, 2 ** bits))

    def check_images(self, images: torch.Tensor) -> None:
        shape = (self.img_channels, self.img_resolution, self.img_resolution)
        if images.dim() != 4 or tuple(images.shape[1:]) != shape:
            raise ValueError(f"expected images [B, {', '.join(map(str, shape))}], got {tuple(images.shape)}")
        if images.is_floating_point():
            raise ValueError("log_prob takes integer images (0..2**bits-1), not floats")

    def log_prob(self, images: torch.Tensor) -> torch.Tensor:
        self.check_images(images)
        logp = F.log_softmax(self.logits, dim=-1)                          # [C, R, R, K]
        idx = images.long().clamp(0, 2 ** self.bits - 1)
        picked = logp.unsqueeze(0).expand(idx.shape[0], *logp.shape).gather(-1, idx.unsqueeze(-1)).squeeze(-1)
        return picked.flatten(1).sum(1)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0) -> torch.Tensor:
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        probs = F.softmax(self.logits.float().cpu() / temperature, dim=-1).reshape(-1, 2 ** self.bits)
        draws = torch.multinomial(probs, n, replacement=True, generator=generator)   # [C*R*R, n]
        shape = (self.img_channels, self.img_resolution, self.img_resolution)
        return draws.t().reshape(n, *shape).to(torch.uint8).to(self.logits.device)

    def extra_repr(self) -> str:
        return f"resolution={self.img_resolution}, channels={self.img_channels}, bits={self.bits}"
