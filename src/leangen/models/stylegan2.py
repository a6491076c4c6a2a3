"""StyleGAN2 generator (Karras et al. 2020, config F with skip ToRGB) in pure PyTorch.

Layout at resolution R (``log2 R = L``): learned 4x4 constant -> styled 3x3 conv -> ToRGB, then for every
resolution 8..R an upsampling styled conv, a styled conv and a ToRGB whose output is added to the upsampled skip
image. ``num_ws = 2L - 2`` (14 at 256). Channel widths follow the reference table with a channel multiplier.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from leangen.models.base import StyleGenerator, register_model
from leangen.ops.channels import stylegan2_channels
from leangen.ops.modulated import ConstantInput, NoiseMode, StyledConv, ToRGB
from leangen.ops.prunable import ChannelGroup, ChannelScale


@register_model("stylegan2-generator")
class StyleGAN2Generator(StyleGenerator):
    """``z [B, z_dim]`` -> image ``[B, 3, R, R]`` in about [-1, 1].

    Prunable (``leangen.ops.prunable``): ``channels`` lists one width per layer output, ``[constant, 4x4 conv, then
    the upsampling conv and the conv of every resolution 8..R]`` (``2 log2 R - 2`` widths; default: the reference
    table). ``channel_gates`` gives each width a ``ChannelScale`` γ that multiplies the styles of the layers reading
    it (what condensation penalizes: the model has no norms; on the styles, a zero γ also leaves the demodulation of
    those layers, so the channel is removable exactly). ``gain_channels`` (default ``channels``): the widths whose fan-in sets the equalized-lr gains, so a
    pruned copy computes what its original computes with those channels removed (the ToRGB layers have no
    demodulation to cancel a changed gain).
    """

    prunable = True

    def __init__(self, resolution: int = 256, z_dim: int = 512, w_dim: int = 512, mapping_layers: int = 8,
                 mapping_lr_mul: float = 0.01, channel_multiplier: int = 2, channel_base: int = 512,
                 max_channels: int = 512, blur_kernel: tuple[int, ...] = (1, 3, 3, 1), channels: list[int] | None = None,
                 channel_gates: bool = False, gain_channels: list[int] | None = None):
        super().__init__()
        log_size = int(math.log2(resolution))
        if 2 ** log_size != resolution or resolution < 8:
            raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
        self._init_mapping(z_dim, w_dim, mapping_layers, mapping_lr_mul, num_ws=2 * log_size - 2, resolution=resolution)
        ch = stylegan2_channels(channel_multiplier, channel_base, max_channels)
        table = [ch[4], ch[4]] + [ch[2 ** i] for i in range(3, log_size + 1) for _ in range(2)]
        c = [int(x) for x in channels] if channels is not None else table
        gains = [int(x) for x in gain_channels] if gain_channels is not None else c
        if len(c) != len(table) or min(c) < 1:
            raise ValueError(f"channels needs {len(table)} positive widths (constant, 4x4 conv, then two per "
                             f"resolution 8..{resolution}), got {c}")
        if len(gains) != len(c) or any(g < w for g, w in zip(gains, c)):
            raise ValueError(f"gain_channels needs {len(c)} widths, each at least the layer's width {c}; got {gains}")
        self.widths, self.gain_widths = c, gains
        self.input = ConstantInput(c[0], 4)
        self.conv1 = StyledConv(c[0], c[1], 3, w_dim, blur_kernel=blur_kernel, resolution=4, fan_in_channels=gains[0])
        self.to_rgb1 = ToRGB(c[1], w_dim, upsample=False, fan_in_channels=gains[1])
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        for k, i in enumerate(range(3, log_size + 1)):
            res, a = 2 ** i, 2 + 2 * k  # widths a (upsampling conv) and a + 1 (conv) belong to this resolution
            self.convs.append(StyledConv(c[a - 1], c[a], 3, w_dim, upsample=True, blur_kernel=blur_kernel,
                                         resolution=res, fan_in_channels=gains[a - 1]))
            self.convs.append(StyledConv(c[a], c[a + 1], 3, w_dim, blur_kernel=blur_kernel, resolution=res,
                                         fan_in_channels=gains[a]))
            self.to_rgbs.append(ToRGB(c[a + 1], w_dim, blur_kernel=blur_kernel, fan_in_channels=gains[a + 1]))
        # none without gates: the reference state dict (and forward) is unchanged
        self.gates = nn.ModuleList(ChannelScale(w) for w in c) if channel_gates else None

    def _gain(self, idx: int) -> torch.Tensor | None:
        return None if self.gates is None else self.gates[idx].weight

    def synthesis(self, ws: torch.Tensor, noise_mode: NoiseMode = "random", **_: Any) -> torch.Tensor:
        """``ws [B, num_ws, w_dim]`` -> ``[B, 3, R, R]``."""
        g = self._gain
        x = self.conv1(self.input(ws.shape[0]), ws[:, 0], noise_mode, style_gain=g(0))
        skip = self.to_rgb1(x, ws[:, 1], style_gain=g(1))
        i = 1
        for k, (up_conv, conv, to_rgb) in enumerate(zip(self.convs[::2], self.convs[1::2], self.to_rgbs)):
            x = up_conv(x, ws[:, i], noise_mode, style_gain=g(1 + 2 * k))
            x = conv(x, ws[:, i + 1], noise_mode, style_gain=g(2 + 2 * k))
            skip = to_rgb(x, ws[:, i + 2], skip, style_gain=g(3 + 2 * k))
            i += 2
        return skip

    def channel_groups(self) -> list[ChannelGroup]:
        """One group per width: its gate γ scores it; it sizes its producer's output (the constant, or a styled conv's
        weight dim 1 and bias) and the input of its consumers (the next styled conv and/or a ToRGB: weight dim 2
        and the rows of the style affine that modulates those input channels)."""
        convs = ["conv1"] + [f"convs.{k}" for k in range(len(self.convs))]
        rgbs = {1: "to_rgb1", **{3 + 2 * k: f"to_rgbs.{k}" for k in range(len(self.to_rgbs))}}
        groups = []
        for idx in range(len(self.widths)):
            gate = f"gates.{idx}"
            slices: list[tuple[str, int]] = [(f"{gate}.weight", 0)]
            if idx == 0:
                slices.append(("input.input", 1))
            else:
                slices += [(f"{convs[idx - 1]}.conv.weight", 1), (f"{convs[idx - 1]}.activate.bias", 0)]
            consumers = convs[idx:idx + 1] + ([rgbs[idx]] if idx in rgbs else [])
            for layer in consumers:
                slices += [(f"{layer}.conv.weight", 2), (f"{layer}.conv.modulation.weight", 0),
                           (f"{layer}.conv.modulation.bias", 0)]
            # features: the producer's output (the gate scales what consumers read, not the activation itself)
            groups.append(ChannelGroup(index=idx, norms=[gate], slices=slices,  # type: ignore[arg-type]
                                       features=["input" if idx == 0 else convs[idx - 1]]))
        return groups

    def pruned_config(self, widths: list[int]) -> dict[str, Any]:
        """The config of a copy with these widths that keeps this model's equalized-lr gains."""
        return dict(self.config, channels=[int(w) for w in widths], gain_channels=list(self.gain_widths))


# ----------------------------------------------------------------------------------------------------------------------
# Presets
