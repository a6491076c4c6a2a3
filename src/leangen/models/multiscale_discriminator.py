"""Multi-scale conditional PatchGAN discriminator (pix2pixHD / SPADE / ASAP-Net trainers).

``num_d`` PatchGANs see the one-hot label map (plus the instance-edge map with ``instance_edge``, as pix2pixHD and
SPADE do) concatenated with the image at full, 1/2, 1/4 ... resolution (3x3
average pooling, stride 2, between scales). Each has ``layers`` 4x4 convs (stride 2 except the last, width doubling
up to ``max_width``), spectral norm, InstanceNorm (not on the first) and LeakyReLU(0.2), then a 4x4 conv to one
logit per patch. The official setting is ``num_d=2, layers=4, width=64, max_width=512``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from leangen.models.base import Discriminator, register_model
from leangen.ops.labels import label_input


class _PatchGAN(nn.Module):
    def __init__(self, cin: int, width: int, layers: int, max_width: int) -> None:
        super().__init__()
        sn = nn.utils.spectral_norm
        blocks: list[nn.Module] = [nn.Sequential(sn(nn.Conv2d(cin, width, 4, 2, 2)), nn.LeakyReLU(0.2))]
        ch = width
        for i in range(1, layers):
            out = min(ch * 2, max_width)
            stride = 1 if i == layers - 1 else 2
            blocks.append(nn.Sequential(sn(nn.Conv2d(ch, out, 4, stride, 2, bias=False)),
                                        nn.InstanceNorm2d(out), nn.LeakyReLU(0.2)))
            ch = out
        self.blocks = nn.ModuleList(blocks)
        self.head = sn(nn.Conv2d(ch, 1, 4, 1, 2))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats = []
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        return self.head(x), feats


@register_model("multiscale-discriminator")
class MultiscaleDiscriminator(Discriminator):
    """``(labels [B, H, W], image [B, 3, H, W], instances [B, H, W] | None) -> (logits: list of [B, 1, h_i, w_i]
    per scale, features: list)``.

    ``features`` holds every intermediate activation of every scale (for feature matching). With ``instance_edge``
    the boundaries of ``instances`` are one more input channel (zeros when no instances are given)."""

    input_kind = "labels"
    takes_labels = True
    takes_instances = True

    def __init__(self, num_classes: int = 13, width: int = 64, layers: int = 4, max_width: int = 512,
                 num_d: int = 2, instance_edge: bool = False) -> None:
        super().__init__()
        self.num_classes, self.instance_edge = num_classes, instance_edge
        cin = num_classes + int(instance_edge) + 3
        self.scales = nn.ModuleList(_PatchGAN(cin, width, layers, max_width) for _ in range(num_d))

    def forward(self, labels: torch.Tensor, image: torch.Tensor,
                instances: torch.Tensor | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        _, cond = label_input(labels, self.num_classes, self.instance_edge, instances, image.dtype)
        x = torch.cat([cond, image], dim=1)
        logits, feats = [], []
        for i, d in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            out, f = d(x)
            logits.append(out)
            feats += f
        return logits, feats
