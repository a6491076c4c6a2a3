"""Multidimensional upscaling: a chain of separately trained SPN stages as one likelihood model.

``SPNChain([first, upscale, depth])``: stage (a) samples slice 0 at low depth, (b) the other slices at that depth
given slice 0, (c) the low bits given the high-bit image. Each stage reads the full image reduced to its own
``bits`` and returns the nats of the part it models, so ``log p(x) = sum of the stages' log_prob`` — exact, and
bits/dim of the chain is the sum of the stages' bits/dim. Each stage's ``sample(..., prefix=previous output)``
continues from the stage before. Stages are rebuilt from the model registry (no import of their files).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from leangen.models.base import MODEL_TYPES, LikelihoodModel, register_model


@register_model("spn-chain")
class SPNChain(LikelihoodModel):
    """``stages``: ``[{"model_type": ..., "config": {...}}, ...]`` in sampling order; the last one sets ``bits``."""

    sampling_is_cheap = False

    def __init__(self, stages: list[dict[str, Any]]) -> None:
        super().__init__()
        if not stages:
            raise ValueError("an SPN chain needs at least one stage")
        self.stages = nn.ModuleList(MODEL_TYPES[s["model_type"]](**s["config"]) for s in stages)
        first = self.stages[0]
        self.img_resolution, self.img_channels = first.img_resolution, first.img_channels
        self.bits = max(s.bits for s in self.stages)
        for s in self.stages:
            if (s.img_resolution, s.img_channels) != (self.img_resolution, self.img_channels):
                raise ValueError("every stage of a chain must model the same image size and channels")

    @classmethod
    def from_stages(cls, *models: LikelihoodModel) -> "SPNChain":
        """A chain holding copies of the given (trained) stage models' weights."""
        chain = cls([{"model_type": m.model_type, "config": m.config} for m in models])
        for dst, src in zip(chain.stages, models):
            dst.load_state_dict(src.state_dict())
        return chain.to(next(models[0].parameters()).device)

    def _reduced(self, images: torch.Tensor, stage: LikelihoodModel) -> torch.Tensor:
        return torch.bitwise_right_shift(images, self.bits - stage.bits)

    def stage_log_probs(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Nats ``[B]`` of each stage on ``images`` (uint8 at the chain's ``bits``)."""
        return [s.log_prob(self._reduced(images, s)) for s in self.stages]

    def log_prob(self, images: torch.Tensor) -> torch.Tensor:
        return sum(self.stage_log_probs(images))  # type: ignore[return-value]

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0,
               cached: bool = True) -> torch.Tensor:
        """uint8 ``[n, C, N, N]`` at the chain's ``bits``: each stage continues from the previous one's output."""
        out = None
        for s in self.stages:
            out = s.sample(n, generator, temperature, prefix=out, cached=cached)  # type: ignore[call-arg]
        return out  # type: ignore[return-value]
