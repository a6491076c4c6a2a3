"""PixelFolder (He et al., ECCV 2022): a multi-stage pixel synthesizer that folds pixels into channels.

The image is built in ``S`` stages (3 at 256: 16 -> 64 -> 256). Stage ``i`` renders at its "unfolded" resolution
``r_i`` but computes from a map folded 4x down (``f_i = r_i / 4``, two 2x ``fold2x``):

1. ``PosFold`` (positional branch): learned Fourier features of the ``r_i x r_i`` grid (``ch[r_i]`` channels); stage 0
   concatenates the learned constant (``ch[r_0] x r_0 x r_0``) and mixes with ``conv0`` (1x1). ``conv1`` (1x1) reduces to
   ``c1 = ch[f_i] / 16`` channels, and two folds give ``ch[f_i] x f_i x f_i``. Stages > 0 concatenate the previous
   stage's output (``ch[f_i] x f_i x f_i``) and merge with ``conv_merge`` (1x1). All 1x1 convs: equalized conv + bias +
   leaky ReLU. Stage 0 also *creates* a ``conv_merge`` that its forward never uses (0.525M parameters at 256): it is
   kept so that parameter counts and official state dicts match.
2. Two rounds of: modulated 3x3 ``StyledConv`` (``-> ch[2f]``), ``unfold2x`` (channels / 4, resolution x 2),
   modulated 3x3 ``StyledConv`` (``-> ch[2f]``), ``ToRGB`` whose output is added to the 2x-upsampled RGB skip.

Latents: ``num_ws = 4 S + 1`` (13 at 256). The ``k``-th StyledConv uses ``ws[:, k]``; the ToRGB after round ``j`` of stage
``i`` uses ``ws[:, 4 i + 2 j + 2]`` (the index of the next conv, as in StyleGAN2).

Stages: ``num_stages = log2(R) // 2 - 1`` by default (the official formula), giving 3 stages at 256 (16, 64, 256) and
512 (32, 128, 512) and 4 at 1024 (16, 64, 256, 1024). At 32 the formula gives one stage; ``num_stages`` overrides
it (``r_i = R / 4^(S-1-i)``, and the first stage needs ``r_0 >= 4``) so that small models still merge stages.

Parameter counts (official config, channel multiplier 2): 20,843,614 at 256 and 21,141,096 at 1024, as in the
paper. At 512 the official code gives 17,478,430, while the paper's Table B lists 20.84M, the same figure as its
256 entry (probably a copy error; unverified).

MACs at 256: 23.75 G for the whole architecture (the paper's table: 23.78 G). In eager inference (autograd off) the
positional branch (everything before ``conv_merge``; it does not depend on z) is cached per device and dtype (see
``cached_constant``), so a call executes 23.25 G; ``constant_cache(False)`` runs (and counts) all of it. Eager
inference also uses channels-last activations on CPU, the batch-1 weight-modulation conv, in-place bias / noise /
activation and a matmul for ToRGB: about 1.45x faster than the official formulation on a 2-core CPU, same values.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
import torch.nn.functional as F

from leangen.models.base import StyleGenerator, register_model
from leangen.ops.channels import stylegan2_channels
from leangen.ops.conv_layer import ConvLayer
from leangen.ops.coords import LearnedFourierFeatures, cached_constant, coordinate_grid, eager_inference
from leangen.ops.fold import fold2x, unfold2x
from leangen.ops.modulated import ConstantInput, NoiseInjection, NoiseMode, StyledConv, ToRGB, modulated_fc_weight

FOLDS_PER_STAGE = 2  # each stage starts 2 folds (4x) below its output resolution


class PosFold(nn.Module):
    """Positional branch of one stage.

    ``positional(fourier [1, Cu, r, r], const)`` -> folded positional map ``[1, Cf, r/4, r/4]`` (for stage 0 this is
    the stage input), ``merge(pos, prev [B, Cf, r/4, r/4])`` -> stage input ``[B, Cf, r/4, r/4]``.
    """

    def __init__(self, unfolded_channels: int, folded_channels: int, first: bool):
        super().__init__()
        fold_factor = 4 ** FOLDS_PER_STAGE  # channel growth of the folds
        if folded_channels % fold_factor:
            raise ValueError(f"folded channels ({folded_channels}) must be divisible by {fold_factor}")
        c1 = folded_channels // fold_factor
        self.first = first
        if first:
            self.conv0 = ConvLayer(2 * unfolded_channels, unfolded_channels, 1)
        self.conv1 = ConvLayer(unfolded_channels, c1, 1)
        # Built in every stage like the official code, but stage 0 never calls it (no previous stage to merge).
        self.conv_merge = ConvLayer(2 * c1 * fold_factor, c1 * fold_factor, 1)

    def positional(self, fourier: torch.Tensor, const: torch.Tensor | None = None) -> torch.Tensor:
        x = self.conv0(torch.cat([fourier, const], 1)) if self.first else fourier
        x = self.conv1(x)
        for _ in range(FOLDS_PER_STAGE):
            x = fold2x(x)
        return x

    def merge(self, pos: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        return self.conv_merge(torch.cat([pos.expand(prev.shape[0], -1, -1, -1), prev], 1))


@register_model("pixelfolder-generator")
class PixelFolderGenerator(StyleGenerator):
    """``z [B, z_dim]`` -> image ``[B, 3, R, R]`` in about [-1, 1].

    Args:
        resolution: output size R (power of two >= 16).
        num_stages: number of stages S (default ``log2(R) // 2 - 1``); stage resolutions are ``R / 4^(S-1-i)``.
        channel_multiplier, channel_base, max_channels: widths, as in ``stylegan2_channels`` (resolutions below 4
            use the 4x4 width).

    ``activation_memory_format``: the layout of the activations (set by ``ExecutionPolicy.prepare``; values do not
    depend on it). Channels-last makes the 3x3 convs after each unfold (few input channels, high resolution) about
    1.4x faster on CPU, and fold/unfold copies of contiguous channel runs.
    """

    activation_memory_format: torch.memory_format = torch.channels_last

    def __init__(self, resolution: int = 256, z_dim: int = 512, w_dim: int = 512, mapping_layers: int = 8,
                 mapping_lr_mul: float = 0.01, channel_multiplier: int = 2, channel_base: int = 512,
                 max_channels: int = 512, num_stages: int | None = None, blur_kernel: tuple[int, ...] = (1, 3, 3, 1)):
        super().__init__()
        log_size = int(math.log2(resolution))
        if 2 ** log_size != resolution or not 16 <= resolution <= 1024:
            raise ValueError(f"resolution must be a power of two in 16..1024, got {resolution}")
        num_stages = num_stages or log_size // FOLDS_PER_STAGE - 1
        first_res = resolution // 4 ** (num_stages - 1)
        if num_stages < 1 or first_res < 4:
            raise ValueError(f"{num_stages} stages do not fit {resolution}px: the first stage would render at "
                             f"{first_res}px (needs >= 4 to fold twice)")
        self.num_stages = num_stages
        self.stage_resolutions = [resolution // 4 ** (num_stages - 1 - i) for i in range(num_stages)]
        self._init_mapping(z_dim, w_dim, mapping_layers, mapping_lr_mul, num_ws=4 * num_stages + 1,
                           resolution=resolution)
        table = stylegan2_channels(channel_multiplier, channel_base, max_channels)
        ch = {r: table[max(r, 4)] for r in (2 ** i for i in range(log_size + 1))}

        self.input = ConstantInput(ch[first_res], first_res)
        self.lffs = nn.ModuleList()
        self.posfolders = nn.ModuleList()
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        for i, r in enumerate(self.stage_resolutions):
            f = r // 4
            self.lffs.append(LearnedFourierFeatures(ch[r]))
            self.posfolders.append(PosFold(ch[r], ch[f], first=i == 0))
            in_ch = ch[f]
            for j in range(FOLDS_PER_STAGE):
                res = f * 2 ** j
                out_ch = ch[2 * res]
                if out_ch % 4:
                    raise ValueError(f"width {out_ch} at {2 * res}px is not divisible by 4 (needed to unfold)")
                self.convs.append(StyledConv(in_ch, out_ch, 3, w_dim, blur_kernel=blur_kernel, resolution=res))
                # unfold2x turns [out_ch, res, res] into [out_ch / 4, 2 res, 2 res]
                self.convs.append(StyledConv(out_ch // 4, out_ch, 3, w_dim, blur_kernel=blur_kernel,
                                             resolution=2 * res))
                self.to_rgbs.append(ToRGB(out_ch, w_dim, blur_kernel=blur_kernel))
                in_ch = out_ch

    def _positional(self, i: int, device: torch.device, dtype: torch.dtype,
                    memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
        """Stage ``i``'s folded positional map ``[1, C, f, f]`` (depends only on the weights: cached in inference)."""
        r = self.stage_resolutions[i]
        lff, pf = self.lffs[i], self.posfolders[i]

        def compute() -> torch.Tensor:
            fourier = lff(coordinate_grid(r, r, device=device, dtype=dtype))
            const = self.input.input.to(dtype) if i == 0 else None
            return pf.positional(fourier, const).contiguous(memory_format=memory_format)

        params = [*lff.parameters(), *pf.parameters()] + ([self.input.input] if i == 0 else [])
        return cached_constant(pf, (device, dtype, memory_format), compute, params=params, max_entries=1)

    def synthesis(self, ws: torch.Tensor, noise_mode: NoiseMode = "random", return_stages: bool = False,
                  **_: Any) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """``ws [B, num_ws, w_dim]`` -> images ``[B, 3, R, R]``.

        With ``return_stages=True`` returns ``(image, stage_images)``: the RGB skip at the end of every stage
        (``[B, 3, r_i, r_i]``, e.g. 16, 64 and 256 px at 256; the last one is the image).
        """
        b = ws.shape[0]
        fmt = self.activation_memory_format
        x = None
        skip = None
        stages: list[torch.Tensor] = []
        k = 0  # index of the next StyledConv (= its w index)
        for i in range(self.num_stages):
            pos = self._positional(i, ws.device, ws.dtype, fmt)
            x = pos.expand(b, -1, -1, -1) if x is None else self.posfolders[i].merge(pos, x)
            for _ in range(FOLDS_PER_STAGE):
                x = styled_conv(self.convs[k], x, ws[:, k], noise_mode)
                x = styled_conv(self.convs[k + 1], unfold2x(x), ws[:, k + 1], noise_mode)
                skip = to_rgb(self.to_rgbs[k // 2], x, ws[:, k + 2], skip)
                k += 2
            assert skip is not None
            stages.append(skip)
        assert skip is not None
        if return_stages:
            return skip.contiguous(), [s.contiguous() for s in stages]
        return skip.contiguous()


def styled_conv(layer: StyledConv, x: torch.Tensor, w: torch.Tensor, noise_mode: NoiseMode) -> torch.Tensor:
    """``layer(x, w, noise_mode)``; without autograd the bias, noise and activation run in place on the conv output.

    The conv follows its ``impl`` (default ``auto``: at batch 1 the modulation goes into the weight, one ordinary
    conv, instead of scaling the input and output activations; see ``leangen.ops.modulated``).
    """
    if not eager_inference():
        return layer(x, w, noise_mode)
    y = layer.conv(x, w)
    noise = _noise(layer.noise, y, noise_mode)
    if noise is not None:
        y.add_(noise * layer.noise.weight.to(y.dtype))
    act = layer.activate
    if act.bias is not None:
        y.add_(act.bias.to(y.dtype).view(1, -1, 1, 1))
    return F.leaky_relu_(y, act.negative_slope).mul_(act.scale)


def to_rgb(layer: ToRGB, x: torch.Tensor, w: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
    """``layer(x, w, skip)``; in eager inference on channels-last ``x`` the 1x1 conv to 3 channels runs as one matrix
    product per sample (``[H*W, C] @ [C, 3]``), which oneDNN's conv does ~5x slower. Same values."""
    if not eager_inference() or not x.is_contiguous(memory_format=torch.channels_last):
        return layer(x, w, skip)
    b, c, h, wd = x.shape
    rgb = torch.bmm(x.permute(0, 2, 3, 1).reshape(b, h * wd, c), modulated_fc_weight(layer.conv, w))  # [B, HW, 3]
    out = rgb.view(b, h, wd, -1).permute(0, 3, 1, 2) + layer.bias.to(x.dtype)
    if skip is not None:
        out = out + (layer.upsample(skip) if layer.upsample is not None else skip)
    return out


def _noise(inj: NoiseInjection, y: torch.Tensor, mode: NoiseMode) -> torch.Tensor | None:
    """The ``[B or 1, 1, H, W]`` noise ``NoiseInjection`` would add to ``y`` (None when it adds nothing)."""
    if mode == "none":
        return None
    if mode == "const":
        nc = inj.noise_const
        return None if nc is None or nc.shape[-2:] != y.shape[-2:] else nc.to(y.dtype)
    return torch.randn(y.shape[0], 1, y.shape[2], y.shape[3], device=y.device, dtype=y.dtype)


# ----------------------------------------------------------------------------------------------------------------------
# Presets
