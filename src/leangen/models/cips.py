"""CIPS-skip (Anokhin et al., CVPR 2021): an image generator in which every pixel is computed independently.

Each pixel's input is ``concat(LFF(x, y), emb[:, y, x])``: learned Fourier features of its coordinates (``hidden``
channels) and a learned per-pixel coordinate embedding (``hidden x R x R``, 33.55M of the 44.32M parameters at 256).
A per-pixel MLP of modulated fully connected layers (1x1 ``StyledConv``: modulation, demodulation, noise, bias +
leaky ReLU) maps it to features: ``conv1`` (2*hidden -> 512), then ``log2(R) - 1`` pairs of layers whose widths follow
the StyleGAN2 table (512 x5, 256, 128 at 256). After every pair a ``ToRGB`` (modulated 1x1, no upsampling) adds to
the running RGB sum. Every layer uses the same w (``num_ws = 1``): no W+ and no style mixing.

Because there are no spatial ops, any coordinate set can be rendered: a crop, a larger or non-square canvas, a
panorama strip. How the embedding is read is the constructor option ``embedding_sampling``:

- ``"table"`` (default, leangen's presets): at the native grid the table is used as is; off the grid it is sampled
  bilinearly with ``align_corners=True`` (coordinates +-1 hit the centres of the border pixels, so the native grid
  reproduces the table exactly; outside [-1, 1] it is clamped). Training and inference see the same embedding.
- ``"official_eval"`` (what ``leangen.convert`` sets for official CIPS checkpoints): the table is always read with
  ``F.grid_sample(table, coords, mode="bilinear", padding_mode="border", align_corners=False)``, the native grid
  included. That is what the official generator computes in eval mode: with ``align_corners=False`` the grid's +-1
  are the table's outer edges, so even the native grid gets a slightly stretched, half-pixel-shifted resampling that
  mixes neighbouring entries (visibly different from the raw table). The mode applies everywhere (native grid, other
  sizes, crops, and training too), so a converted model computes the official eval-mode samples; the official
  training mode alone uses the raw table at the native grid.

Speed: all layers are 1x1, so they run as one matrix product per sample on pixel-major ``[B, H*W, C]`` activations
with the modulated + demodulated weight built once per layer (same math as ``ModulatedConv2d``). Without autograd the
bias, noise and activation are applied in place on two reused buffers, and the input features of a grid (which do
not depend on z) are cached; see ``cached_constant``.
"""
from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import nn
import torch.nn.functional as F

from leangen.models.base import StyleGenerator, register_model
from leangen.ops.channels import stylegan2_channels
from leangen.ops.coords import LearnedFourierFeatures, cached_constant, coordinate_grid, eager_inference
from leangen.ops.modulated import ConstantInput, NoiseInjection, NoiseMode, StyledConv, ToRGB, modulated_fc_weight


EmbeddingSampling = Literal["table", "official_eval"]
EMBEDDING_SAMPLING: tuple[str, ...] = ("table", "official_eval")


def cips_widths(resolution: int, channel_multiplier: int = 2, channel_base: int = 512,
                max_channels: int = 512) -> list[int]:
    """Width of each of the ``log2(R) - 1`` layer pairs: the StyleGAN2 table read at 4, 8, ..., R."""
    table = stylegan2_channels(channel_multiplier, channel_base, max_channels)
    return [table[2 ** (i + 2)] for i in range(int(math.log2(resolution)) - 1)]


@register_model("cips-generator")
class CIPSGenerator(StyleGenerator):
    """``z [B, z_dim]`` -> image ``[B, 3, H, W]`` in about [-1, 1] (``H = W = resolution`` unless asked otherwise).

    Args:
        resolution: native size R (power of two, 8..1024); the embedding has R x R entries.
        hidden_size: channels of the Fourier features and of the embedding (512 in the paper).
        channel_multiplier, channel_base, max_channels: layer widths, as in ``stylegan2_channels``.
        embedding_sampling: ``"table"`` (the table itself at the native grid, ``align_corners=True`` elsewhere) or
            ``"official_eval"`` (``grid_sample`` with ``align_corners=False`` everywhere, as the official eval-mode
            forward); see the module docstring.
    """

    def __init__(self, resolution: int = 256, z_dim: int = 512, w_dim: int = 512, mapping_layers: int = 8,
                 mapping_lr_mul: float = 0.01, hidden_size: int = 512, channel_multiplier: int = 2,
                 channel_base: int = 512, max_channels: int = 512, embedding_sampling: EmbeddingSampling = "table"):
        super().__init__()
        log_size = int(math.log2(resolution))
        if 2 ** log_size != resolution or not 8 <= resolution <= 1024:
            raise ValueError(f"resolution must be a power of two in 8..1024, got {resolution}")
        if embedding_sampling not in EMBEDDING_SAMPLING:
            raise ValueError(f"embedding_sampling must be one of {', '.join(EMBEDDING_SAMPLING)}, "
                             f"got {embedding_sampling!r}")
        self.embedding_sampling = embedding_sampling
        self._init_mapping(z_dim, w_dim, mapping_layers, mapping_lr_mul, num_ws=1, resolution=resolution)
        self.hidden_size = hidden_size
        self.lff = LearnedFourierFeatures(hidden_size)
        self.emb = ConstantInput(hidden_size, resolution)
        widths = cips_widths(resolution, channel_multiplier, channel_base, max_channels)
        self.conv1 = StyledConv(2 * hidden_size, widths[0], 1, w_dim, resolution=resolution)
        self.linears = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        in_ch = widths[0]
        for out_ch in widths:
            self.linears.append(StyledConv(in_ch, out_ch, 1, w_dim, resolution=resolution))
            self.linears.append(StyledConv(out_ch, out_ch, 1, w_dim, resolution=resolution))
            self.to_rgbs.append(ToRGB(out_ch, w_dim, upsample=False))
            in_ch = out_ch
        self._max_width = max(widths)

    # ------------------------------------------------------------------------------------------------ input features

    def input_features(self, coords: torch.Tensor) -> torch.Tensor:
        """Per-pixel inputs at arbitrary coordinates: ``[B, 2, H, W]`` in [-1, 1] (x, y) -> pixel-major
        ``[B, H*W, 2*hidden]`` (Fourier features, then the bilinearly sampled embedding).

        ``align_corners`` follows ``embedding_sampling``: True for ``"table"`` (+-1 are the border pixels' centres),
        False for ``"official_eval"`` (+-1 are the table's outer edges, as in the official code).
        """
        b, _, h, w = coords.shape
        dtype = self.emb.input.dtype
        coords = coords.to(dtype)
        fourier = self.lff(coords)
        emb = F.grid_sample(self.emb.input.expand(b, -1, -1, -1), coords.permute(0, 2, 3, 1), mode="bilinear",
                            padding_mode="border", align_corners=self.embedding_sampling == "table")
        # cat of the two channel-last views writes one contiguous pixel-major tensor (no extra copy).
        return torch.cat([fourier.permute(0, 2, 3, 1), emb.permute(0, 2, 3, 1)], dim=3).reshape(b, h * w, -1)

    def _grid_features(self, h: int, w: int) -> torch.Tensor:
        """Input features of the full ``h x w`` grid, ``[1, h*w, 2*hidden]``; cached (they do not depend on z)."""
        p = self.emb.input

        def compute() -> torch.Tensor:
            if (h, w) != (self.img_resolution, self.img_resolution) or self.embedding_sampling != "table":
                # "official_eval" resamples the table even at the native grid (align_corners=False)
                return self.input_features(coordinate_grid(h, w, device=p.device, dtype=p.dtype))
            # "table" at the native grid: the embedding itself (what sampling it at the pixel centres gives, cheaper)
            fourier = self.lff(coordinate_grid(h, w, device=p.device, dtype=p.dtype))
            return torch.cat([fourier.permute(0, 2, 3, 1), p.permute(0, 2, 3, 1)], dim=3).reshape(1, h * w, -1)

        return cached_constant(self, (h, w, self.embedding_sampling), compute,
                               params=(p, self.lff.weight, self.lff.bias), max_entries=1)

    # ----------------------------------------------------------------------------------------------------- synthesis

    def synthesis(self, ws: torch.Tensor, noise_mode: NoiseMode = "random", coords: torch.Tensor | None = None,
                  size: int | tuple[int, int] | None = None, **_: Any) -> torch.Tensor:
        """``ws [B, num_ws, w_dim]`` (only ``ws[:, 0]`` is used) -> images ``[B, 3, H, W]``.

        ``coords [B or 1, 2, H, W]`` in [-1, 1] (x then y) renders those points (a crop, a panorama strip, ...);
        ``size=(H, W)`` renders the full square at another resolution. Default: the native R x R grid.
        Constant noise exists only at the native grid; elsewhere ``noise_mode="const"`` adds none.
        """
        w = ws[:, 0] if ws.ndim == 3 else ws
        b = w.shape[0]
        if coords is not None:
            if size is not None:
                raise ValueError("pass either coords or size, not both")
            if coords.ndim != 4 or coords.shape[1] != 2 or coords.shape[0] not in (1, b):
                raise ValueError(f"coords must be [B or 1, 2, H, W] with B={b}, got {tuple(coords.shape)}")
            h, wd = coords.shape[-2:]
            x = self.input_features(coords)
        else:
            h, wd = (size, size) if isinstance(size, int) else (size or (self.img_resolution,) * 2)
            x = self._grid_features(int(h), int(wd))
        n = h * wd
        x = x.to(w.dtype)

        # Without autograd, layers write into two reused buffers and apply bias/noise/activation in place: at 256 each
        # activation is 128 MB, and fresh allocations (page faults) cost about as much as the element-wise math.
        inplace = eager_inference()
        bufs = [torch.empty(b * n * self._max_width, device=w.device, dtype=w.dtype) for _ in range(2)] if inplace else None
        step = 0

        def layer(module: StyledConv, inp: torch.Tensor) -> torch.Tensor:
            nonlocal step
            out = None
            if bufs is not None:
                out = bufs[step % 2][: b * n * module.conv.out_channels].view(b, n, module.conv.out_channels)
                step += 1
            noise = _pixel_noise(module.noise, b, h, wd, noise_mode, w)
            return styled_fc(module, inp, w, noise, out)

        x = layer(self.conv1, x)
        rgb = None
        for i, to_rgb in enumerate(self.to_rgbs):
            x = layer(self.linears[2 * i], x)
            x = layer(self.linears[2 * i + 1], x)
            y = _matmul(x, modulated_fc_weight(to_rgb.conv, w)) + to_rgb.bias.view(1, 1, -1).to(x.dtype)
            rgb = y if rgb is None else rgb + y
        assert rgb is not None
        return rgb.transpose(1, 2).reshape(b, 3, h, wd)


# ------------------------------------------------------------------------------------------------------------------
# 1x1 modulated layers on pixel-major activations

def _matmul(x: torch.Tensor, wt: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``x [B or 1, N, in] @ wt [B, in, out]`` -> ``[B, N, out]`` (a shared ``x`` is broadcast over the batch)."""
    if out is None:
        if x.shape[0] == 1 and wt.shape[0] > 1:
            # One GEMM against every sample's weight side by side, [N, in] @ [in, B*out], returned as a [B, N, out]
            # view: torch.matmul would first copy x B times (8.6 GB for CIPS-256's first layer at batch 32).
            b, cin, cout = wt.shape
            y = torch.mm(x[0], wt.transpose(0, 1).reshape(cin, b * cout))
            return y.view(-1, b, cout).transpose(0, 1)
        return torch.matmul(x, wt)
    if x.shape[0] == wt.shape[0]:
        return torch.bmm(x, wt, out=out)
    for i in range(wt.shape[0]):  # shared input: one GEMM per sample, no materialized broadcast copy
        torch.mm(x[0], wt[i], out=out[i])
    return out


def styled_fc(layer: StyledConv, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None,
              out: torch.Tensor | None = None) -> torch.Tensor:
    """A 1x1 ``StyledConv`` on pixel-major ``x [B or 1, N, in]`` -> ``[B, N, out]``.

    ``noise [B or 1, N, 1]`` (or None). With ``out`` (a buffer, autograd off) everything after the GEMM is in place.
    """
    y = _matmul(x, modulated_fc_weight(layer.conv, w), out)
    act = layer.activate
    bias = act.bias.to(y.dtype) if act.bias is not None else None
    if out is not None:
        if noise is not None:
            y.add_(noise * layer.noise.weight.to(y.dtype))
        if bias is not None:
            y.add_(bias)
        return F.leaky_relu_(y, act.negative_slope).mul_(act.scale)
    if noise is not None:
        y = y + noise * layer.noise.weight.to(y.dtype)
    if bias is not None:
        y = y + bias
    return F.leaky_relu(y, act.negative_slope) * act.scale


def _pixel_noise(inj: NoiseInjection, b: int, h: int, w: int, mode: NoiseMode, ref: torch.Tensor) -> torch.Tensor | None:
    """``NoiseInjection``'s noise in pixel-major layout ``[B or 1, H*W, 1]`` (None when nothing is added).

    ``[B, 1, H, W]`` and ``[B, H*W, 1]`` share one memory layout, so random noise equals the NCHW module's draw.
    """
    if mode == "none":
        return None
    if mode == "const":
        nc = inj.noise_const
        if nc is None or tuple(nc.shape[-2:]) != (h, w):
            return None
        return nc.reshape(1, h * w, 1).to(ref.dtype)
    return torch.randn(b, 1, h, w, device=ref.device, dtype=ref.dtype).reshape(b, h * w, 1)


# ----------------------------------------------------------------------------------------------------------------------
# Presets
