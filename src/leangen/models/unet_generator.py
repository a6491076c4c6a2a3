"""The pix2pix U-Net generator (Isola et al. 2017; ``unet_256``: 8 stride-2 levels, 256 -> 1 -> 256).

Encoder level i: LeakyReLU(0.2) (not before the first), conv 4x4 stride 2, norm (not on the first nor the innermost).
Decoder level i: ReLU, transposed conv 4x4 stride 2, norm (not on the outermost, which ends in tanh), optional
dropout; each decoder output is concatenated with the encoder feature of the same resolution (the skip). Widths
``ngf * (1, 2, 4, 8, 8, ...)``. With BatchNorm the convs have no bias (the reference does the same); with
InstanceNorm they do. pix2pix keeps dropout on at test time as its noise source; here ``dropout`` defaults to 0 so
the translator is deterministic.

Pruning (``leangen.compress``): the widths of every encoder and decoder level that has a norm are constructor
arguments (``channels``), so a pruned U-Net is an ordinary, loadable model. The outermost and innermost encoder
widths have no norm whose scale could score a channel and stay fixed. ``norm_affine`` gives InstanceNorm a learned
per-channel (γ, β), which condensation sparsifies (BatchNorm always has one).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from leangen.models.base import Translator, register_model
from leangen.ops.labels import one_hot_labels
from leangen.ops.prunable import ChannelGroup


def _norm(kind: str, ch: int, affine: bool = False) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(ch)
    if kind == "instance":
        return nn.InstanceNorm2d(ch, affine=affine)
    raise ValueError(f"unknown norm {kind!r} (batch or instance)")


@register_model("unet-generator")
class UnetGenerator(Translator):
    """``labels int [B, R, R]`` (or images ``[B, in_channels, R, R]``) -> image ``[B, 3, R, R]`` in (-1, 1).

    ``channels``: the prunable widths in execution order: encoder levels ``1 .. num_downs - 2``, then decoder levels
    ``num_downs - 1 .. 1`` (``2 * num_downs - 3`` entries; default: each level's pix2pix width).
    """

    prunable = True

    def __init__(self, num_classes: int = 9, resolution: int = 256, ngf: int = 64, num_downs: int = 8,
                 norm: str = "batch", dropout: float = 0.0, in_channels: int | None = None,
                 channels: list[int] | None = None, norm_affine: bool = False) -> None:
        super().__init__()
        if resolution % (2 ** num_downs):
            raise ValueError(f"resolution {resolution} must be divisible by 2**num_downs = {2 ** num_downs}")
        if num_downs < 2:
            raise ValueError("num_downs must be >= 2")
        self.num_classes, self.img_resolution, self.in_channels = num_classes, resolution, in_channels
        self.size_multiple = 2 ** num_downs
        n = num_downs
        bias = norm != "batch"
        enc = [ngf * min(2 ** i, 8) for i in range(n)]
        dec = [3] + enc[:-1]  # dec[i]: output width of decoder level i (level 0 writes RGB)
        if channels is not None:
            if len(channels) != 2 * n - 3 or min(channels, default=1) < 1:
                raise ValueError(f"channels needs {2 * n - 3} positive widths (encoder levels 1..{n - 2}, decoder "
                                 f"levels {n - 1}..1), got {channels}")
            enc[1:n - 1] = channels[:n - 2]
            dec[1:] = list(reversed(channels[n - 2:]))
        self.widths = enc[1:n - 1] + dec[:0:-1]
        self.enc, self.dec = enc, dec
        cin = [in_channels or num_classes] + enc[:-1]
        self.down = nn.ModuleList(nn.Conv2d(cin[i], enc[i], 4, 2, 1, bias=bias) for i in range(n))
        self.down_norm = nn.ModuleList(_norm(norm, enc[i], norm_affine) if 0 < i < n - 1 else nn.Identity()
                                       for i in range(n))
        # Decoder level i reads [skip of encoder level i, output of decoder level i + 1] (the innermost: no skip).
        up_in = [enc[i] + (dec[i + 1] if i < n - 1 else 0) for i in range(n)]
        self.up = nn.ModuleList(nn.ConvTranspose2d(up_in[i], dec[i], 4, 2, 1, bias=bias if i else True)
                                for i in range(n))
        self.up_norm = nn.ModuleList(_norm(norm, dec[i], norm_affine) if i else nn.Identity() for i in range(n))
        self.dropout = float(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Label map ``int [B, H, W]`` or image ``[B, in_channels, H, W]`` -> ``[B, 3, H, W]`` (tanh)."""
        h = one_hot_labels(x, self.num_classes) if x.dim() == 3 else x.float()
        skips = []
        for i, (conv, norm) in enumerate(zip(self.down, self.down_norm)):
            h = norm(conv(h if i == 0 else F.leaky_relu(h, 0.2)))
            skips.append(h)
        n = len(self.down)
        for i in reversed(range(n)):
            if i < n - 1:
                h = torch.cat([skips[i], h], dim=1)
            h = self.up_norm[i](self.up[i](F.relu(h)))
            if 0 < i and self.dropout > 0 and i >= n - 4:  # the three 8*ngf decoder levels below the innermost
                h = F.dropout(h, self.dropout, self.training)
        return torch.tanh(h)

    def channel_groups(self) -> list[ChannelGroup]:
        """One group per entry of ``channels`` (see ``leangen.ops.prunable``): the producing conv and its norm, and
        the input channels of every layer that reads the width.

        A pruned channel is zero after its norm, and ReLU / LeakyReLU map zero to zero, so its readers' input slices
        go too: encoder level i is read by encoder level i + 1 and, through the skip, by decoder level i at offset 0
        of its concatenated input; decoder level i is read by decoder level i - 1 at offset ``enc[i - 1]`` (after
        that level's skip). Transposed convs store weights as ``[in, out, k, k]``: output dim 1, input dim 0.
        """
        n = len(self.down)
        state = self.state_dict()

        def produced(conv: str, norm: str, transposed: bool) -> list[tuple[str, int] | tuple[str, int, int]]:
            names = [(f"{conv}.weight", 1 if transposed else 0), (f"{conv}.bias", 0)]
            names += [(f"{norm}.{p}", 0) for p in ("weight", "bias", "running_mean", "running_var")]
            return [s for s in names if s[0] in state]  # bias-free convs (BatchNorm), non-affine / stat-free norms

        groups: list[ChannelGroup] = []
        for i in range(1, n - 1):  # encoder level i (those with a norm)
            slices = produced(f"down.{i}", f"down_norm.{i}", False)
            slices += [(f"down.{i + 1}.weight", 1), (f"up.{i}.weight", 0, 0)]
            groups.append(ChannelGroup(index=len(groups), norms=[f"down_norm.{i}"], slices=slices))
        for i in reversed(range(1, n)):  # decoder level i, in execution order
            slices = produced(f"up.{i}", f"up_norm.{i}", True) + [(f"up.{i - 1}.weight", 0, self.enc[i - 1])]
            groups.append(ChannelGroup(index=len(groups), norms=[f"up_norm.{i}"], slices=slices))
        return groups
