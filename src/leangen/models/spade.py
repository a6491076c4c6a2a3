"""SPADE generator (GauGAN, Park et al. 2019) without the image encoder: the ASAP-Net paper's SPADE baseline at its
reference widths (Cityscapes 256x512: 93.05 M parameters, 292.7 GMACs here; GAN Compression's table lists the
official GauGAN at 93.0 M / 281 G). The label map, resized to ``H/2^u x W/2^u``, goes through a 3x3 conv to
``16 nf`` channels, then
SPADE residual blocks (head, two middle, four up blocks halving the width to ``nf``) with nearest 2x upsampling
between them (``u = 5`` upsamplings, SPADE's "normal" setting), LeakyReLU(0.2), a 3x3 conv to RGB, tanh.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from leangen.models.base import Translator, register_model
from leangen.ops.labels import label_input
from leangen.ops.spade import SPADEResBlock


@register_model("spade-generator")
class SPADEGenerator(Translator):
    """``labels int64 [B, H, W]`` (or one-hot ``[B, K, H, W]``) -> ``[B, 3, H, W]`` in (-1, 1); sides must be
    multiples of ``2**num_up``."""

    takes_instances = True
    def __init__(self, num_classes: int = 13, resolution: int = 512, aspect: int = 1, nf: int = 64,
                 num_up: int = 5, hidden: int = 128, instance_edge: bool = False) -> None:
        super().__init__()
        if not 1 <= num_up <= 6:
            raise ValueError(f"num_up must be in 1..6 (5 is SPADE's 'normal' setting), got {num_up}")
        self.num_classes, self.img_resolution = num_classes, resolution
        self.img_height, self.img_width = resolution, resolution * aspect
        self.instance_edge, self.num_up, self.tile = instance_edge, num_up, 2 ** num_up
        self.size_multiple = self.tile
        lc = num_classes + int(instance_edge)
        self.fc = nn.Conv2d(lc, 16 * nf, 3, padding=1)
        self.head_0 = SPADEResBlock(16 * nf, 16 * nf, lc, hidden)
        self.middle = nn.ModuleList(SPADEResBlock(16 * nf, 16 * nf, lc, hidden) for _ in range(2))
        widths = [16 * nf, 8 * nf, 4 * nf, 2 * nf, nf]
        self.ups = nn.ModuleList(SPADEResBlock(a, b, lc, hidden) for a, b in zip(widths[:-1], widths[1:]))
        self.conv_img = nn.Conv2d(nf, 3, 3, padding=1)

    def forward(self, labels: torch.Tensor, instances: torch.Tensor | None = None) -> torch.Tensor:
        _, seg = label_input(labels, self.num_classes, self.instance_edge, instances, self.fc.weight.dtype)
        h, w = seg.shape[2:]
        if h % self.tile or w % self.tile:
            raise ValueError(f"input {h}x{w} is not a multiple of {self.tile}")
        x = self.fc(F.interpolate(seg, size=(h // self.tile, w // self.tile), mode="nearest"))
        x = self.head_0(x, seg)
        # Upsampling points in order: before middle 0, before middle 1, before each of the 4 up blocks. SPADE's
        # "normal" setting (5) skips the one between the middle blocks, "more" (6) uses all; fewer (tiny models
        # at 32 px) drop them from the start.
        ups = [True] * 6 if self.num_up == 6 else [False, False, False, False, False, False]
        if self.num_up < 6:
            for i in ([0, 2, 3, 4, 5][5 - self.num_up:]):
                ups[i] = True
        for block, up in zip([*self.middle, *self.ups], ups):
            x = block(_up(x) if up else x, seg)
        return torch.tanh(self.conv_img(F.leaky_relu(x, 0.2)))

    def example_inputs(self, batch: int) -> tuple[Any, ...]:
        gen = torch.Generator().manual_seed(0)
        return (torch.randint(0, self.num_classes, (batch, self.img_height, self.img_width), generator=gen),)


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="nearest")
