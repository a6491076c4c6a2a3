"""ASAP-Net (Rott Shaham, Gharbi, Zhang, Shechtman, Michaeli, CVPR 2021): spatially-adaptive pixelwise networks.

A label map ``[B, H, W]`` becomes an image in two streams:

- Low resolution: one-hot labels (plus, optionally, the instance-boundary map) are reduced by a fixed tent filter
  (factor ``S1``), then by ``log2(S2)`` learned stride-2 convs (64 wide, the last widening to ``lr_max_width``),
  go through ``lr_depth`` plain conv blocks (no skip connections) and a 1x1 head; every low-res conv is followed by
  an affine InstanceNorm and a ReLU. The head predicts, for every cell of the ``H/S x W/S`` grid (``S = S1 * S2``;
  16 rows at the training size), the weights and biases of a per-pixel MLP of ``hr_depth`` layers, ``hr_width``
  wide.
- Full resolution: every ``S x S`` tile runs its cell's MLP on its pixels' one-hot labels + the periodic positional
  encoding (``4 log2 S`` channels). Hidden layers LeakyReLU(0.01), output tanh.

Convs followed by a norm carry no bias (affine InstanceNorm), as in the official code; this is what makes the
parameter counts exact (``asapnet-facades-512``: 82,007,363). The positional encoding is recomputed for each input
size (the official generator caches it from the first call, which is wrong for a second size).

Which conditioning channels each stream sees follows the official ``lr_instance`` rule: the low-res stream gets the
one-hot labels plus the instance-edge channel (when ``instance_edge``); the per-pixel MLP gets that same stack minus
its last channel when ``lr_instance`` (default: ``lr_instance = instance_edge``, i.e. edges feed the low-res stream
only). ``lr_instance=False`` with edges gives the edges to both streams; ``lr_instance=True`` without edges reproduces
the official code's dropping of the last label channel from the MLP input (``leangen convert`` needs both cases).

Pruning (``leangen.compress``): the widths of the low-res convs are a constructor argument (``channels``), so a
pruned ASAP-Net is an ordinary, loadable model. Each width is scored by its conv's affine InstanceNorm (γ, β; always
affine, so there is no ``norm_affine`` switch). The per-pixel MLP's widths are not pruned: its weights are outputs of
the head, not parameters, and its layout is part of what the head predicts.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from leangen.models.base import Translator, register_model
from leangen.ops.labels import conv_norm, label_input
from leangen.ops.pixelwise import (is_power_of_two, mlp_param_count, periodic_encoding, periodic_encoding_channels,
                                   tent_downsample, tiled_mlp, tiled_mlp_labels)
from leangen.ops.prunable import ChannelGroup

REFERENCE = "tamarott/ASAPNet (f27f202) models/networks/generator.py, measured in reference notes §2.3"


@register_model("asapnet")
class ASAPNet(Translator):
    """``labels int64 [B, H, W]`` (or one-hot float ``[B, K, H, W]``) -> image ``[B, 3, H, W]`` in (-1, 1).

    ``resolution`` is the training height, ``aspect`` the width/height ratio; ``downsampling`` (S, default
    ``resolution // 16``) is the tile size and ``learned_ds`` (S2) its learned part. Inputs of any size that is a
    multiple of S work. ``reflection_pad`` / ``replicate_pad``: the low-res convs pad by reflection / replication
    instead of zeros. ``lr_instance`` (default ``instance_edge``): the MLP input drops the last conditioning channel
    (see the module docstring). ``channels``: the output widths of the low-res convs in execution order, ``[stem,
    down_1 .. down_n, block_1 .. block_lr_depth]`` (``n = log2(learned_ds)``); default ``lr_width`` for the stem and
    every downsampling conv but the last, ``lr_max_width`` from there on. When given it replaces ``lr_width`` and
    ``lr_max_width`` (a pruned model keeps them in its config, unused).
    """

    prunable = True
    #: integer label maps run the MLP's first layer as a row lookup (``tiled_mlp_labels``); False: the concatenated
    #: one-hot + positional input through ``tiled_mlp`` (the reference the lookup is tested against)
    mlp_lookup: bool = True

    takes_instances = True
    def __init__(self, num_classes: int = 13, resolution: int = 512, aspect: int = 1, downsampling: int | None = None,
                 learned_ds: int = 16, lr_width: int = 64, lr_max_width: int = 1024, lr_depth: int = 7,
                 hr_width: int = 64, hr_depth: int = 5, instance_edge: bool = False,
                 reflection_pad: bool = False, init_gain: float = 0.02, lr_instance: bool | None = None,
                 replicate_pad: bool = False, channels: list[int] | None = None) -> None:
        super().__init__()
        tile = downsampling or resolution // 16
        if not is_power_of_two(tile) or not is_power_of_two(learned_ds) or tile % learned_ds:
            raise ValueError(f"the tile size S={tile} and its learned part S2={learned_ds} must be powers of two "
                             f"with S2 <= S")
        if resolution % tile:
            raise ValueError(f"resolution {resolution} must be a multiple of the tile size {tile}")
        self.num_classes, self.img_resolution = num_classes, resolution
        self.img_height, self.img_width = resolution, resolution * aspect
        self.tile, self.fixed_ds = tile, tile // learned_ds
        self.size_multiple = tile
        if reflection_pad and replicate_pad:
            raise ValueError("choose one of reflection_pad and replicate_pad")
        self.instance_edge = instance_edge
        self.lr_instance = instance_edge if lr_instance is None else lr_instance
        lr_in = num_classes + int(instance_edge)
        # The official MLP input is the low-res input minus its last channel when lr_instance (see module docstring).
        self.hr_inputs = lr_in - int(self.lr_instance)
        if self.hr_inputs < 1:
            raise ValueError("lr_instance without an instance edge needs at least 2 label classes")
        self.hr_channels = [self.hr_inputs + periodic_encoding_channels(tile)] + [hr_width] * (hr_depth - 1) + [3]
        pad = "reflect" if reflection_pad else "replicate" if replicate_pad else "zeros"
        n_down = int(math.log2(learned_ds))
        c = list(channels) if channels is not None else default_lr_widths(lr_width, lr_max_width, n_down, lr_depth)
        if len(c) != 1 + n_down + lr_depth or min(c) < 1:
            raise ValueError(f"channels needs {1 + n_down + lr_depth} positive widths (stem, {n_down} downsampling "
                             f"convs, {lr_depth} blocks), got {c}")
        self.widths = c
        # lr_stream.{2i}: conv i (+ its affine norm), lr_stream.{2i + 1}: its ReLU; the stem and the blocks keep the
        # size, the n_down convs after the stem halve it. Plain blocks: ASAP-Net's low-res blocks have no skip.
        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate(zip([lr_in] + c[:-1], c)):
            stride = 2 if 1 <= i <= n_down else 1
            layers += [conv_norm(cin, cout, 3, stride, norm="instance_affine", padding_mode=pad), nn.ReLU()]
        self.lr_stream = nn.Sequential(*layers)
        self.head = nn.Conv2d(c[-1], mlp_param_count(self.hr_channels), 1)
        for m in self.modules():  # the official init: xavier normal, gain 0.02
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_normal_(m.weight, gain=init_gain)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @property
    def params_per_tile(self) -> int:
        """Weights + biases of one tile's MLP (predicted, not learned)."""
        return mlp_param_count(self.hr_channels)

    def forward(self, labels: torch.Tensor, instances: torch.Tensor | None = None) -> torch.Tensor:
        """``labels`` int ``[B, H, W]`` or one-hot ``[B, K, H, W]``; ``instances`` optional int ``[B, H, W]`` ids
        (boundaries feed the low-res stream, and the MLP unless ``lr_instance``, when the model was built with
        ``instance_edge``; absent: no edges). Returns ``[B, 3, H, W]`` in (-1, 1)."""
        dtype = self.head.weight.dtype
        onehot, lr_in = label_input(labels, self.num_classes, self.instance_edge, instances, dtype)
        b, _, h, w = onehot.shape
        if h % self.tile or w % self.tile:
            raise ValueError(f"input {h}x{w} is not a multiple of the {self.tile}px tile")
        params = self.head(self.lr_stream(tent_downsample(lr_in, self.fixed_ds)))
        if not labels.is_floating_point() and self.mlp_lookup and labels.device.type != "meta":
            # Integer labels: the one-hot part of the MLP's first layer as a row lookup (same values, no
            # full-resolution MLP input); float (one-hot or soft) maps take the general path below. On the meta
            # device (where MACs are counted) the general path runs, so counts stay the architecture's, as the
            # paper and the official notes count them (the lookup executes 0.3 of 48.9 GMACs fewer at facades-512).
            k = min(self.hr_inputs, self.num_classes)
            dense = lr_in[:, k:self.hr_inputs] if self.hr_inputs > k else None
            return tiled_mlp_labels(labels, k, dense, params, self.hr_channels, self.tile)
        pos = periodic_encoding(h, w, self.tile, onehot.device, dtype).expand(b, -1, -1, -1)
        # the usual case (MLP sees exactly the one-hot map) keeps the graph free of a slice
        hr_in = onehot if self.hr_inputs == self.num_classes else lr_in[:, :self.hr_inputs]
        return tiled_mlp(torch.cat([hr_in, pos], 1), params, self.hr_channels, self.tile)

    def example_inputs(self, batch: int) -> tuple[Any, ...]:
        """Seeded random label maps ``[batch, H, W]`` at the model's own size (for ``leangen.profile``)."""
        return (random_labels(batch, self.img_height, self.img_width, self.num_classes),)

    def channel_groups(self) -> list[ChannelGroup]:
        """One group per low-res conv (see ``leangen.ops.prunable``): its output channels, scored by its affine
        InstanceNorm, size the conv's weight (dim 0, no bias: the norm follows), the norm's γ and β, and the input
        channels of the next conv, or of the 1x1 head for the last one.

        A channel with γ = β = 0 is zero after its norm and after ReLU; zero, reflection and replication padding of
        a zero map are zero, so the reading conv gets nothing from it and removing it is exact.
        """
        groups = []
        for i in range(len(self.widths)):
            conv, norm = f"lr_stream.{2 * i}.0", f"lr_stream.{2 * i}.1"
            reader = f"lr_stream.{2 * i + 2}.0.weight" if i + 1 < len(self.widths) else "head.weight"
            groups.append(ChannelGroup(index=i, norms=[norm], slices=[(f"{conv}.weight", 0), (f"{norm}.weight", 0),
                                                                       (f"{norm}.bias", 0), (reader, 1)]))
        return groups


def default_lr_widths(lr_width: int, lr_max_width: int, n_down: int, lr_depth: int) -> list[int]:
    """The official low-res widths: ``lr_width`` for the stem and the downsampling convs, the last of which widens
    to ``lr_max_width``, the width of every block (``lr_width`` throughout when ``n_down == 0``)."""
    widest = lr_max_width if n_down else lr_width
    return [lr_width] * n_down + [widest] * (1 + lr_depth)


def random_labels(batch: int, height: int, width: int, num_classes: int, seed: int = 0) -> torch.Tensor:
    """Seeded int64 ``[batch, height, width]`` label ids, drawn on the CPU."""
    return torch.randint(0, num_classes, (batch, height, width), generator=torch.Generator().manual_seed(seed))
