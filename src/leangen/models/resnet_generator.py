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

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from leangen.models.base import Translator, register_model
from leangen.ops.labels import one_hot_labels
from leangen.ops.prunable import ChannelGroup, default_widths, register_translator_presets


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


def _register_presets() -> None:
    paper: dict[str, Any] = {"source": "pix2pix/CycleGAN ResnetGenerator (GAN Compression README: 11.4M, 56.8G MACs "
                                       "at 256x256, 3-channel image input)", "params_m": 11.4, "gmacs": 56.8}
    register_translator_presets(
        "resnet9-256", "resnet-generator", dict(num_classes=9, resolution=256, ngf=64, n_blocks=9), paper=paper,
        description="pix2pix/CycleGAN ResNet-9 generator (IN, reflection padding, transposed convs) at 256x256")
    register_translator_presets(
        "resnet6-256", "resnet-generator", dict(num_classes=9, resolution=256, ngf=64, n_blocks=6),
        paper={"source": "pix2pix/CycleGAN resnet_6blocks"},
        description="pix2pix/CycleGAN ResNet-6 generator at 256x256")
    register_translator_presets(
        "resnet9-64", "resnet-generator", dict(num_classes=9, resolution=64, ngf=64, n_blocks=9),
        description="the full-width ResNet-9 at 64x64: compression quality runs (FID) a CPU can afford")
    register_translator_presets(
        "resnet-tiny32", "resnet-generator", dict(num_classes=9, resolution=32, ngf=8, n_blocks=3), tiny=True,
        description="ResNet generator (ngf 8, 3 blocks) at 32x32 for CPU tests; trains on openmoji-seg-32")
    _register_cyclegan_presets()


#: CycleGAN's recipe (Zhu et al. 2017, official code): LSGAN, λ_cycle 10 per direction, identity 0.5 λ, pools of 50
#: fakes, Adam 2e-4 (0.5, 0.999), batch 1, flips; 100 epochs at a constant rate then 100 decaying linearly to 0. An
#: epoch is counted as horse2zebra's (max(1067, 1334) = 1334 images): 133.4 kimg + 133.4 kimg.
CYCLEGAN_PAPER: dict[str, Any] = dict(batch=1, lr=0.0002, betas=[0.5, 0.999], gan_loss="lsgan", lambda_A=10.0,
                                      lambda_B=10.0, lambda_identity=0.5, pool_size=50, lr_decay_start_kimg=133.4,
                                      lr_decay_kimg=133.4, kimg=266.8, mirror=True, ema_kimg=0.0, metrics=[])
#: The tiny CPU preset: the same losses, batch 4 and a 5x higher rate for runs of a few hundred steps.
CYCLEGAN_TINY: dict[str, Any] = dict(CYCLEGAN_PAPER, batch=4, lr=0.001, lr_decay_start_kimg=None, lr_decay_kimg=None,
                                     kimg=None, mirror=False)


def _register_cyclegan_presets() -> None:
    from leangen.registry import Preset, register_preset

    def components(res: int, ngf: int, n_blocks: int, ndf: int, layers: int) -> dict[str, Any]:
        g = ("resnet-generator", dict(num_classes=0, resolution=res, ngf=ngf, n_blocks=n_blocks, in_channels=3))
        d = ("patch-discriminator", dict(num_classes=0, width=ndf, layers=layers, norm="instance", spectral=False))
        return {"G": g, "D": d}  # the objective builds two of each: G_A, G_B from G and D_A, D_B from D

    register_preset(Preset(
        name="cyclegan-resnet9-256", family="cyclegan", task="unpaired", resolution=256, objective="cyclegan",
        components=components(256, 64, 9, 64, 4), training=dict(CYCLEGAN_PAPER),
        paper={"source": "CycleGAN (Zhu et al. 2017): ResNet-9 generators (11.378M each), 70x70 PatchGAN "
                         "(2.765M each); MACs as GAN Compression counts them", "params_m": 11.378, "gmacs": 56.8},
        description="CycleGAN at 256x256: two ResNet-9 generators, two 70x70 PatchGANs, LSGAN + cycle + identity"))
    register_preset(Preset(
        name="cyclegan-tiny32", family="cyclegan", task="unpaired", resolution=32, objective="cyclegan",
        components=components(32, 8, 3, 16, 3),
        training={k: v for k, v in CYCLEGAN_TINY.items() if v is not None},
        description="tiny CycleGAN (ResNet ngf 8, 3 blocks; PatchGAN width 16) for CPU tests on "
                    "openmoji-faces2animals-32"))


_register_presets()
