"""Perceptual loss for paired training on a network that is available offline: the TF-Inception trunk leangen
already uses for FID (``leangen.metrics.inception``), frozen.

The official ASAP-Net/SPADE recipe uses VGG19 (weight 10, layer weights 1/32 .. 1); VGG19 weights are not shipped
with leangen, so the paired objective's ``perceptual_weight`` term uses TF-Inception instead: L1 between the
features of output and target after ``Conv2d_2b_3x3``, ``Conv2d_4a_3x3`` and ``Mixed_5d``, weighted 1/4, 1/2, 1. Images
stay at their own size (no resize to 299: the layers used are convolutional) and in [-1, 1], which is the trunk's
input range.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

LAYER_WEIGHTS = (0.25, 0.5, 1.0)


class InceptionPerceptual(nn.Module):
    """``(output, target)`` float ``[B, 3, H, W]`` in [-1, 1] -> scalar loss (gradients flow to ``output``)."""

    def __init__(self, device: str | torch.device = "cpu", weights: str | os.PathLike | None = None) -> None:
        super().__init__()
        from leangen.metrics.inception import load_inception

        # Not registered as a submodule: the frozen trunk is shared with the metrics and never saved in snapshots.
        self._net = [load_inception(device, weights).net]

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        n = self._net[0]
        x = n.Conv2d_2b_3x3(n.Conv2d_2a_3x3(n.Conv2d_1a_3x3(x)))
        f1 = x
        x = n.Conv2d_4a_3x3(n.Conv2d_3b_1x1(F.max_pool2d(x, 3, stride=2)))
        f2 = x
        x = F.max_pool2d(x, 3, stride=2) if min(x.shape[-2:]) >= 3 else x
        x = n.Mixed_5d(n.Mixed_5c(n.Mixed_5b(x)))
        return [f1, f2, x]

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            real = self.features(target.float())
        fake = self.features(output.float())
        return sum(w * (f - r).abs().mean() for w, f, r in zip(LAYER_WEIGHTS, fake, real))  # type: ignore[return-value]
