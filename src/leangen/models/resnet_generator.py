"""The pix2pix/CycleGAN ResNet generator (Johnson et al. 2016, as used by Isola et al. 2017 and Zhu et al. 2017).

Layout (``ngf=64``, ``n_blocks=9``: the 11.4M-parameter, 56.8-GMAC generator at 256x256)::

    reflect-pad 3, conv 7x7 -> ngf, IN, ReLU
    n_down x [conv 3x3 stride 2 (width x2), IN, ReLU]
    n_blocks x residual [reflect-pad 1, conv 3x3, IN, ReLU, reflect-pad 1, conv 3x3, IN] + skip
    n_down x [transposed conv 3x3 stride 2 output_padding 1 (width /2), IN, ReLU]
    reflect-pad 3, conv 7x7 -> 3, tanh

Convs carry a bias (the reference code does so with InstanceNorm); the norms are not affine unless ``norm_affine``,
which the compression pipeline turns on so every channel has a scale γ to sparsify (``leangen.compress``).

The input is a label map ``int [B, H, W]`` (one-hot, ``num_classes`` channels) or, with ``in_channels`` set, a float
image ``[B, in_channels, H, W]`` in [-1, 1] (CycleGAN/pix2pix image-to-image; also what the reference parameter
count uses). Widths are constructor arguments (``channels``), so a pruned generator is an ordinary, loadable model.
"""
from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from leangen.models.base import Translator, register_model
from leangen.ops.labels import one_hot_labels
from leangen.ops.prunable import ChannelGroup, default_widths


class _Block(nn.Module):
    """Residual block: the inner width ``inner`` is prunable on its own; the trunk width is shared by every block."""

    def __init__(self, trunk: int, inner: int, affine: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(trunk, inner, 3)
        self.norm1 = nn.InstanceNorm2d(inner, affine=affine)
        self.conv2 = nn.Conv2d(inner, trunk, 3)
        self.norm2 = nn.InstanceNorm2d(trunk, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # ReLU out of place: pruning tools that trace autograd lose the norm node behind an in-place ReLU.
        h = F.relu(self.norm1(self.conv1(F.pad(x, (1, 1, 1, 1), mode="reflect"))))
        return x + self.norm2(self.conv2(F.pad(h, (1, 1, 1, 1), mode="reflect")))


@register_model("resnet-generator")
class ResnetGenerator(Translator):
    """``labels int [B, R, R]`` (or images ``[B, in_channels, R, R]``) -> image ``[B, 3, R, R]`` in (-1, 1)."""

    prunable = True

    def __init__(self, num_classes: int = 9, resolution: int = 256, ngf: int = 64, n_blocks: int = 9,
                 n_down: int = 2, channels: list[int] | None = None, norm_affine: bool = False,
                 in_channels: int | None = None) -> None:
        super().__init__()
        if resolution % (2 ** n_down):
            raise ValueError(f"resolution {resolution} must be divisible by 2**n_down = {2 ** n_down}")
        self.num_classes, self.img_resolution = num_classes, resolution
        self.n_down, self.n_blocks, self.in_channels = n_down, n_blocks, in_channels
        # reflection padding: 3 px at full resolution, 1 px at the bottleneck (so it needs 2 px there)
        self.size_multiple, self.min_input_size = 2 ** n_down, max(4, 2 ** (n_down + 1))
        # channels = [stem, down_1 .. down_n (the last is the trunk), block_1 .. block_B (inner), up_1 .. up_n]
        trunk_default = ngf * 2 ** n_down
        c = list(channels) if channels is not None else default_widths(ngf, n_down) + [trunk_default] * n_blocks + \
            [ngf * 2 ** (n_down - i - 1) for i in range(n_down)]
        if len(c) != 1 + n_down + n_blocks + n_down or min(c) < 1:
            raise ValueError(f"channels needs {1 + 2 * n_down + n_blocks} positive widths, got {c}")
        self.widths = c
        trunk = c[n_down]
        self.stem = nn.Conv2d(in_channels or num_classes, c[0], 7)
        self.stem_norm = nn.InstanceNorm2d(c[0], affine=norm_affine)
        self.down = nn.ModuleList(nn.Conv2d(c[i], c[i + 1], 3, stride=2, padding=1) for i in range(n_down))
        self.down_norm = nn.ModuleList(nn.InstanceNorm2d(c[i + 1], affine=norm_affine) for i in range(n_down))
        self.blocks = nn.ModuleList(_Block(trunk, c[1 + n_down + k], norm_affine) for k in range(n_blocks))
        ups = [trunk] + c[1 + n_down + n_blocks:]
        self.up = nn.ModuleList(nn.ConvTranspose2d(ups[i], ups[i + 1], 3, stride=2, padding=1, output_padding=1)
                                for i in range(n_down))
        self.up_norm = nn.ModuleList(nn.InstanceNorm2d(ups[i + 1], affine=norm_affine) for i in range(n_down))
        self.to_rgb = nn.Conv2d(ups[-1], 3, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Label map ``int [B, H, W]`` or image ``[B, in_channels, H, W]`` -> ``[B, 3, H, W]`` (tanh)."""
        x = one_hot_labels(x, self.num_classes) if x.dim() == 3 else x.float()
        x = F.relu(self.stem_norm(self.stem(F.pad(x, (3, 3, 3, 3), mode="reflect"))))
        for conv, norm in zip(self.down, self.down_norm):
            x = F.relu(norm(conv(x)))
        for block in self.blocks:
            x = block(x)
        for conv, norm in zip(self.up, self.up_norm):
            x = F.relu(norm(conv(x)))
        return torch.tanh(self.to_rgb(F.pad(x, (3, 3, 3, 3), mode="reflect")))

    def channel_groups(self) -> list[ChannelGroup]:
        """The prunable widths and every tensor dimension each one sizes (see ``leangen.ops.prunable``).

        Residual coupling: the trunk width is the output of the last downsampling conv, of every block's second
        conv (added to the skip) and the input of every block's first conv and of the first transposed conv, so
        it is one group whose channel is removable only when every norm feeding the sum has dropped it.
        Transposed convs store weights as ``[in, out, k, k]``: their output is dim 1, their input dim 0.
        """
        n, b = self.n_down, self.n_blocks
        groups: list[ChannelGroup] = []
        # producers[i]: (conv prefix, is transposed, norm prefix) of width i
        produce: dict[int, list[tuple[str, bool, str]]] = {0: [("stem", False, "stem_norm")]}
        consume: dict[int, list[tuple[str, bool]]] = {}
        for i in range(n):
            produce.setdefault(i + 1, []).append((f"down.{i}", False, f"down_norm.{i}"))
            consume.setdefault(i, []).append((f"down.{i}", False))
        for k in range(b):
            inner = 1 + n + k
            produce[inner] = [(f"blocks.{k}.conv1", False, f"blocks.{k}.norm1")]
            consume[inner] = [(f"blocks.{k}.conv2", False)]
            produce[n].append((f"blocks.{k}.conv2", False, f"blocks.{k}.norm2"))
            consume.setdefault(n, []).append((f"blocks.{k}.conv1", False))
        up_idx = [n] + [1 + n + b + i for i in range(n)]
        for i in range(n):
            produce[up_idx[i + 1]] = [(f"up.{i}", True, f"up_norm.{i}")]
            consume.setdefault(up_idx[i], []).append((f"up.{i}", True))
        consume.setdefault(up_idx[-1], []).append(("to_rgb", False))
        for idx in range(len(self.widths)):
            slices: list[tuple[str, int]] = []
            for conv, transposed, norm in produce[idx]:
                slices += [(f"{conv}.weight", 1 if transposed else 0), (f"{conv}.bias", 0),
                           (f"{norm}.weight", 0), (f"{norm}.bias", 0)]
            slices += [(f"{conv}.weight", 0 if transposed else 1) for conv, transposed in consume[idx]]
            groups.append(ChannelGroup(index=idx, norms=[norm for _, _, norm in produce[idx]], slices=slices))
        return groups
