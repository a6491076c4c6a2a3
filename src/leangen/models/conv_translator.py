"""A small convolutional translator (label map -> image) and a conditional PatchGAN discriminator.

The translator is a plain encoder-decoder: one-hot labels -> stride-2 convs -> residual blocks -> nearest
upsampling + convs -> RGB. It is the minimal paired model (the L1 baseline the paired machinery is tested with);
ASAP-Net, pix2pixHD and SPADE are separate families.

The discriminator is the 70x70-style PatchGAN of pix2pix (Isola et al. 2017) with spectral norm: it sees the label
map (one-hot) concatenated with the image and returns a map of logits, plus its intermediate features for feature
matching. With ``num_classes=0`` it sees the image alone, and ``norm="instance", spectral=False, layers=4`` make it
the 70x70 PatchGAN of pix2pix/CycleGAN's code (``NLayerDiscriminator``, n_layers=3: 4x4 convs with strides 2, 2,
2, 1 and widths 64, 128, 256, 512, InstanceNorm after all but the first, LeakyReLU 0.2, then a 4x4 conv to one
logit per 70x70 patch).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from leangen.models.base import Discriminator, Translator, register_model
from leangen.ops.labels import one_hot_labels


class _ResBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.leaky_relu(self.conv1(F.leaky_relu(x, 0.2)), 0.2))


@register_model("conv-translator")
class ConvTranslator(Translator):
    """``labels int [B, R, R]`` -> image ``[B, 3, R, R]`` in (-1, 1) (tanh)."""

    def __init__(self, num_classes: int = 9, resolution: int = 32, width: int = 32, downsamples: int = 2,
                 res_blocks: int = 2) -> None:
        super().__init__()
        if resolution % (2 ** downsamples):
            raise ValueError(f"resolution {resolution} must be divisible by 2**downsamples = {2 ** downsamples}")
        self.num_classes, self.img_resolution = num_classes, resolution
        self.size_multiple = 2 ** downsamples
        self.stem = nn.Conv2d(num_classes, width, 3, padding=1)
        self.down = nn.ModuleList(nn.Conv2d(width * 2 ** i, width * 2 ** (i + 1), 4, stride=2, padding=1)
                                  for i in range(downsamples))
        mid = width * 2 ** downsamples
        self.blocks = nn.Sequential(*[_ResBlock(mid) for _ in range(res_blocks)])
        self.up = nn.ModuleList(nn.Conv2d(width * 2 ** (i + 1), width * 2 ** i, 3, padding=1)
                                for i in reversed(range(downsamples)))
        self.to_rgb = nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.stem(one_hot_labels(labels, self.num_classes)), 0.2)
        for conv in self.down:
            x = F.leaky_relu(conv(x), 0.2)
        x = self.blocks(x)
        for conv in self.up:
            x = F.leaky_relu(conv(F.interpolate(x, scale_factor=2.0, mode="nearest")), 0.2)
        return torch.tanh(self.to_rgb(x))


@register_model("patch-discriminator")
class PatchDiscriminator(Discriminator):
    """``(labels [B, H, W] | None, image [B, 3, H, W] in [-1, 1]) -> (logits [B, 1, h, w], features list)``.

    ``num_classes=0``: unconditional (``labels`` is ignored and may be None). ``norm``: ``"none"`` or
    ``"instance"`` (InstanceNorm after every conv but the first); ``spectral``: spectral norm on every conv."""

    input_kind = "labels"
    takes_labels = True

    def __init__(self, num_classes: int = 9, width: int = 64, layers: int = 3, norm: str = "none",
                 spectral: bool = True) -> None:
        super().__init__()
        if norm not in ("none", "instance"):
            raise ValueError(f"norm must be 'none' or 'instance', got {norm!r}")
        self.num_classes = num_classes
        sn = spectral_norm if spectral else (lambda m: m)
        chans = [num_classes + 3] + [width * 2 ** min(i, 3) for i in range(layers)]
        self.convs = nn.ModuleList(
            sn(nn.Conv2d(chans[i], chans[i + 1], 4, stride=2 if i < layers - 1 else 1, padding=1))
            for i in range(layers))
        # Parameter-free norms (affine=False), so the state dict is the same with or without them.
        self.norms = nn.ModuleList(nn.InstanceNorm2d(chans[i + 1]) if norm == "instance" and i > 0 else nn.Identity()
                                   for i in range(layers))
        self.head = sn(nn.Conv2d(chans[-1], 1, 4, padding=1))

    def forward(self, labels: torch.Tensor | None, image: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if self.num_classes:
            if labels is None:
                raise ValueError("this PatchDiscriminator is conditional (num_classes > 0): give the label maps")
            x = torch.cat([one_hot_labels(labels, self.num_classes, image.dtype), image], dim=1)
        else:
            x = image
        feats = []
        for conv, norm in zip(self.convs, self.norms):
            x = F.leaky_relu(norm(conv(x)), 0.2)
            feats.append(x)
        return self.head(x), feats
