"""StyleNAT generator (Walton et al., arXiv 2211.05770): a style-based transformer with Hydra neighborhood attention.

Layout (written from the paper's description and the configuration tables; no official code reused):

- mapping network z -> w (PixelNorm + 8 equalized-lr layers, lr multiplier 0.01), a learned 4x4 constant;
- per level (4, 8, ..., R) two transformer blocks, each ``x + Attn(AdaIN(x, w))`` then ``x + MLP(AdaIN'(x, w))``
  (AdaIN = instance norm over the tokens, then a per-channel gain/bias from w; MLP ratio 4, GELU). Block ``j`` of
  level ``l`` takes ``ws[:, 2l + j]``, so ``num_ws = 2 * levels`` (14 at 256) and style mixing acts per block;
- attention: full multi-head self-attention with a relative bias at 4x4; Hydra-NA from 8x8 up, the heads split into
  groups each with its own kernel, dilation and bias table (at 256: k=7 with dilations 1 and R/8);
- heads per level ``max(C // 32, min_heads)``; between levels bilinear 2x upsampling, LayerNorm, a bias-free Linear to
  the next width and a 2-D sinusoidal position code times a learnable scale (initialized at 0); the code is the
  official one (StyleSwin's): column channels first, 1-based positions, ``f_j = exp(-j ln(10000) / (C/4 - 1))``;
- an un-modulated 1x1 ToRGB per level whose outputs are summed StyleGAN2-style ([1,3,3,1] FIR upsampling of the skip).
  Placed as the official code does (``rgb_after_upsample=True``, the default): level l's ToRGB reads the *upsampled*
  features, ``C_{l+1}`` channels, so there is none at 4x4 and two at the output size — 48,921,000 parameters at 256
  and 49,452,934 at 1024, the official code's counts. ``rgb_after_upsample=False`` is leangen's first placement
  (each level's ToRGB on its own output; 48,922,152 / 49,454,374), kept as an option.

Outputs are in [-1, 1] like every leangen generator. (The official code trains on ImageNet-normalized images;
``leangen.convert.stylenat`` scales every ToRGB's weight and biases by ``2 * std`` per channel and shifts the last
ToRGB's bias by ``2 * mean - 1``, which is exact because each ToRGB is affine and the skip upsampling linear.)
Activations are channels-last ``[B, H, W, C]`` inside the network.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn
import torch.nn.functional as F

from leangen.models.base import StyleGenerator, register_model
from leangen.ops.equalized import EqualLinear
from leangen.ops.filters import Upsample
from leangen.ops.modulated import ConstantInput, NoiseMode
from leangen.ops.neighborhood import Backend, HydraNeighborhoodAttention2d, RelPosSelfAttention2d, check_na_args, pair

#: The official width table per level (4, 8, 16, ...) with channel multiplier 2.
PAPER_CHANNELS = (512, 512, 512, 512, 512, 256, 128, 64, 32)


def paper_dilations(resolution: int) -> list[list[int]]:
    """Hydra dilation groups per level as in the FFHQ configs: [1] at 4 and 8, then [1, R/8] at level size R."""
    sizes = [2 ** i for i in range(2, int(math.log2(resolution)) + 1)]
    return [[1] if r <= 8 else [1, r // 8] for r in sizes]


class TokenAdaIN(nn.Module):
    """Instance norm over the tokens of each channel, then ``gamma(w) * x + beta(w)``. ``x [B, H, W, C]``,
    ``w [B, w_dim]`` -> ``[B, H, W, C]``. gamma starts at 1 and beta at 0 (bias initialization)."""

    def __init__(self, channels: int, w_dim: int):
        super().__init__()
        self.style = EqualLinear(w_dim, 2 * channels)
        with torch.no_grad():
            self.style.bias[:channels].fill_(1.0)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(1, 2), keepdim=True)
        var = (x - mean).square().mean(dim=(1, 2), keepdim=True)
        gamma, beta = self.style(w).to(x.dtype)[:, None, None].chunk(2, dim=-1)
        return gamma * ((x - mean) * torch.rsqrt(var + 1e-5)) + beta


class StyleNATBlock(nn.Module):
    """``x + Attn(AdaIN1(x, w))`` then ``x + MLP(AdaIN2(x, w))`` on ``[B, H, W, C]`` (one w per block)."""

    def __init__(self, channels: int, heads: int, w_dim: int, attn: nn.Module, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = TokenAdaIN(channels, w_dim)
        self.attn = attn
        self.norm2 = TokenAdaIN(channels, w_dim)
        hidden = int(channels * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.GELU(), nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x, w))
        return x + self.mlp(self.norm2(x, w))


def sinusoidal_position_2d(h: int, w: int, channels: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``[H, W, C]`` code as the official StyleNAT/StyleSwin upsampler adds it: channels ``[0, C/2)`` encode the
    column, ``[C/2, C)`` the row; within each half the first C/4 channels are ``sin(pos * f_j)`` and the next C/4
    ``cos(pos * f_j)``, positions 1-based, ``f_j = exp(-j * ln(10000) / (C/4 - 1))`` (values in [-1, 1])."""
    quarter = channels // 4
    # The official divisor is C/4 - 1 (a sinusoidal table of C/2 entries per axis); guard C/4 = 1, where it is 0 and
    # only f_0 = 1 is used anyway.
    freq = torch.exp(torch.arange(quarter, device=device, dtype=torch.float32)
                     * (-math.log(10000.0) / max(1, quarter - 1)))

    def code(n: int) -> torch.Tensor:
        ang = torch.arange(1, n + 1, device=device, dtype=torch.float32)[:, None] * freq
        return torch.cat([ang.sin(), ang.cos()], dim=1)  # [n, 2 * quarter]

    cx = code(w)[None, :, :].expand(h, w, 2 * quarter)
    cy = code(h)[:, None, :].expand(h, w, 2 * quarter)
    out = torch.cat([cx, cy], dim=2)
    if out.shape[2] < channels:  # C not a multiple of 4
        out = F.pad(out, (0, channels - out.shape[2]))
    return out.to(dtype)


class TokenUpsample(nn.Module):
    """Bilinear 2x, LayerNorm, bias-free Linear to the next width, plus ``alpha`` times a 2-D sinusoidal code.
    ``[B, H, W, C]`` -> ``[B, 2H, 2W, C_out]``."""

    def __init__(self, channels: int, out_channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.reduction = nn.Linear(channels, out_channels, bias=False)
        self.alpha = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x.permute(0, 3, 1, 2), scale_factor=2, mode="bilinear", align_corners=False)
        x = self.reduction(self.norm(x.permute(0, 2, 3, 1)))
        pos = sinusoidal_position_2d(x.shape[1], x.shape[2], x.shape[3], x.device, x.dtype)
        return x + self.alpha.to(x.dtype) * pos


class PlainToRGB(nn.Module):
    """Un-modulated 1x1 conv to RGB + bias, added to the [1,3,3,1]-upsampled skip. ``[B, H, W, C]`` -> ``[B, 3, H, W]``."""

    def __init__(self, channels: int, upsample: bool):
        super().__init__()
        self.conv = nn.Conv2d(channels, 3, 1)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        self.upsample = Upsample((1, 3, 3, 1)) if upsample else None

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        out = self.conv(x.permute(0, 3, 1, 2)) + self.bias.to(x.dtype)
        if skip is not None:
            out = out + (self.upsample(skip) if self.upsample is not None else skip)
        return out


@register_model("stylenat-generator")
class StyleNATGenerator(StyleGenerator):
    """``z [B, z_dim]`` -> image ``[B, 3, R, R]`` in about [-1, 1].

    Per-level lists (levels 4, 8, ..., R): ``channels`` (default: the official table), ``kernels`` (one or one per
    group; unused at 4x4, which is full attention), ``dilations`` (one entry per Hydra head group; default:
    ``paper_dilations``) and ``heads`` (default ``max(C // head_width, min_heads)``). ``rgb_after_upsample``: the
    official ToRGB placement (default; ``False``: leangen's first placement, see the module docstring). ``na_backend`` picks the
    neighborhood attention backend (``gather`` for ONNX export).
    """

    def __init__(self, resolution: int = 256, z_dim: int = 512, w_dim: int = 512, mapping_layers: int = 8,
                 mapping_lr_mul: float = 0.01, channels: Sequence[int] | None = None,
                 kernels: Sequence[Sequence[int]] | None = None, dilations: Sequence[Sequence[int]] | None = None,
                 min_heads: int = 4, head_width: int = 32, mlp_ratio: float = 4.0, na_backend: Backend = "auto",
                 heads: Sequence[int] | None = None, rgb_after_upsample: bool = True):
        super().__init__()
        log_size = int(math.log2(resolution))
        if 2 ** log_size != resolution or resolution < 8:
            raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
        sizes = [2 ** i for i in range(2, log_size + 1)]
        n = len(sizes)
        channels = list(channels) if channels is not None else list(PAPER_CHANNELS[:n])
        kernels = [list(k) for k in kernels] if kernels is not None else [[7]] * n
        dilations = [list(d) for d in dilations] if dilations is not None else paper_dilations(resolution)
        heads = list(heads) if heads is not None else [max(c // head_width, min_heads) for c in channels]
        for name, lst in (("channels", channels), ("kernels", kernels), ("dilations", dilations), ("heads", heads)):
            if len(lst) != n:
                raise ValueError(f"{name} needs one entry per level {sizes}, got {len(lst)}")
        self._init_mapping(z_dim, w_dim, mapping_layers, mapping_lr_mul, num_ws=2 * n, resolution=resolution)
        self.heads = [int(h) for h in heads]
        self.input = ConstantInput(channels[0], 4)
        self.blocks = nn.ModuleList()
        for size, c, heads, ks, ds in zip(sizes, channels, self.heads, kernels, dilations):
            for _ in range(2):
                if size == 4:
                    attn: nn.Module = RelPosSelfAttention2d(c, heads, 4)
                else:
                    for k, d in zip(ks * len(ds) if len(ks) == 1 else ks, ds):
                        check_na_args(size, size, pair(k), pair(d))
                    attn = HydraNeighborhoodAttention2d(c, heads, ks, ds, backend=na_backend)
                self.blocks.append(StyleNATBlock(c, heads, w_dim, attn, mlp_ratio))
        self.ups = nn.ModuleList(TokenUpsample(a, b) for a, b in zip(channels[:-1], channels[1:]))
        self.rgb_after_upsample = rgb_after_upsample
        # Official placement: level l < n-1 reads the upsampled C_{l+1} features and the last level its own C_{n-1};
        # the skip is upsampled except into the first ToRGB (no skip yet) and the last (its input is not upsampled).
        rgb_in = channels[1:] + channels[-1:] if rgb_after_upsample else channels
        self.to_rgbs = nn.ModuleList(PlainToRGB(c, upsample=0 < i < n - 1 if rgb_after_upsample else i > 0)
                                     for i, c in enumerate(rgb_in))
        self.apply(_init_weights)

    def set_na_backend(self, backend: Backend) -> None:
        """Switch every Hydra-NA layer to ``backend`` (e.g. ``gather`` before ONNX export); ``config`` records it, so
        a saved model keeps the choice."""
        for m in self.modules():
            if isinstance(m, HydraNeighborhoodAttention2d):
                m.backend = backend
        self.config["na_backend"] = backend

    def synthesis(self, ws: torch.Tensor, noise_mode: NoiseMode = "random", **_: Any) -> torch.Tensor:
        """``ws [B, num_ws, w_dim]`` -> ``[B, 3, R, R]`` (StyleNAT has no noise inputs: ``noise_mode`` is ignored)."""
        x = self.input(ws.shape[0]).permute(0, 2, 3, 1).to(ws.dtype)
        skip = None
        for level, to_rgb in enumerate(self.to_rgbs):
            for i in (2 * level, 2 * level + 1):
                x = self.blocks[i](x, ws[:, i])
            if self.rgb_after_upsample:
                if level < len(self.ups):
                    x = self.ups[level](x)
                skip = to_rgb(x, skip)
            else:
                skip = to_rgb(x, skip)
                if level < len(self.ups):
                    x = self.ups[level](x)
        assert skip is not None
        return skip


def _init_weights(m: nn.Module) -> None:
    """The reference initialization: truncated normal (std 0.02) for Linear, Xavier normal (gain 0.02) for the RGB
    convs, zero biases, unit LayerNorm. Equalized layers (mapping, styles) keep their own N(0, 1) init."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Conv2d):
        nn.init.xavier_normal_(m.weight, gain=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


# ----------------------------------------------------------------------------------------------------------------------
# Presets
