"""pix2pixHD-style global generator (Wang et al. 2018), the ASAP-Net paper's pix2pixHD baseline at its reference
widths: reflection-padded 7x7 stem (``ngf``), ``n_down`` stride-2 convs doubling the width, ``n_blocks`` residual
blocks at the bottleneck, ``n_down`` stride-2 transposed convs back, 7x7 conv to RGB, tanh. InstanceNorm (no affine)
and ReLU after every conv but the last; convs keep their biases, as in the pix2pixHD code. The local enhancer of
pix2pixHD is not part of this baseline (the global generator is what runs at every size here).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from leangen.models.base import Translator, register_model
from leangen.ops.labels import label_input


def _norm_relu(ch: int) -> list[nn.Module]:
    return [nn.InstanceNorm2d(ch), nn.ReLU()]


class _ResBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(ch, ch, 3, padding=1, padding_mode="reflect"), *_norm_relu(ch),
                                  nn.Conv2d(ch, ch, 3, padding=1, padding_mode="reflect"), nn.InstanceNorm2d(ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


@register_model("pix2pixhd-global")
class Pix2PixHDGlobal(Translator):
    """``labels int64 [B, H, W]`` (or one-hot ``[B, K, H, W]``) -> ``[B, 3, H, W]`` in (-1, 1); sides must be
    multiples of ``2**n_down``. ``resolution``/``aspect`` only set the example size used for profiling."""

    takes_instances = True
    def __init__(self, num_classes: int = 13, resolution: int = 512, aspect: int = 1, ngf: int = 64,
                 n_down: int = 4, n_blocks: int = 9, instance_edge: bool = False) -> None:
        super().__init__()
        self.num_classes, self.img_resolution = num_classes, resolution
        self.img_height, self.img_width = resolution, resolution * aspect
        self.instance_edge, self.tile = instance_edge, 2 ** n_down
        # reflection padding: 3 px at full resolution, 1 px at the bottleneck (so it needs 2 px there)
        self.size_multiple, self.min_input_size = self.tile, max(4, 2 * self.tile)
        cin = num_classes + int(instance_edge)
        layers: list[nn.Module] = [nn.Conv2d(cin, ngf, 7, padding=3, padding_mode="reflect"), *_norm_relu(ngf)]
        for i in range(n_down):
            a, b = ngf * 2 ** i, ngf * 2 ** (i + 1)
            layers += [nn.Conv2d(a, b, 3, stride=2, padding=1), *_norm_relu(b)]
        mid = ngf * 2 ** n_down
        layers += [_ResBlock(mid) for _ in range(n_blocks)]
        for i in range(n_down):
            a, b = mid // 2 ** i, mid // 2 ** (i + 1)
            layers += [nn.ConvTranspose2d(a, b, 3, stride=2, padding=1, output_padding=1), *_norm_relu(b)]
        layers += [nn.Conv2d(ngf, 3, 7, padding=3, padding_mode="reflect"), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, labels: torch.Tensor, instances: torch.Tensor | None = None) -> torch.Tensor:
        """``labels`` ids or one-hot; ``instances`` optional ids whose boundaries are an extra input channel."""
        _, x = label_input(labels, self.num_classes, self.instance_edge, instances, self.net[0].weight.dtype)
        if x.shape[2] % self.tile or x.shape[3] % self.tile:
            raise ValueError(f"input {x.shape[2]}x{x.shape[3]} is not a multiple of {self.tile}")
        return self.net(x)

    def example_inputs(self, batch: int) -> tuple[Any, ...]:
        gen = torch.Generator().manual_seed(0)
        return (torch.randint(0, self.num_classes, (batch, self.img_height, self.img_width), generator=gen),)
