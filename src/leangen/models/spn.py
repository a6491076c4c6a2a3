"""Subscale Pixel Networks (Menick & Kalchbrenner, ICLR 2019): an image as a sequence of ``S*S`` interleaved slices.

One ``SubscalePixelNetwork`` models ``p(slice_t | slices_<t)`` for the slices ``t`` it owns:

- a **conditioning network** (plain 3x3 residual convs at slice resolution ``N/S``) reads every slice stacked along
  channels, with the target slice and all later ones zeroed, plus a learned embedding of the target index ``t``;
- a **decoder** (``ops.masked.MaskedConvDecoder``) models the target slice autoregressively — pixels in raster
  order, R -> G -> B within a pixel — with the embedding added in every block; a categorical over the modelled
  values per sub-pixel, or (``likelihood="logistic_mixture"``) PixelCNN++'s discretized logistic mixture of
  ``mixtures`` components with exact probabilities over the ``2**bits`` values.

Multidimensional upscaling is three such models trained separately (each its own preset), chained by
``SPNChain`` (models/spn_chain.py): ``slices="first"`` (slice 0 at low depth), ``slices="rest"`` (size upscaling:
slices 1..S²-1 given slice 0) and ``high_bits > 0`` (depth upscaling: the low ``bits - high_bits`` bits of every
slice given the whole high-bit image and the low bits of earlier slices).

Likelihoods: ``log_prob`` is EXACT — the sum over every owned slice (used by ``bpd``). ``training_log_prob`` is the
paper's memory-bounded training estimate: one uniformly drawn target slice per image, times the number of owned
slices, so activation memory is that of one slice. Its expectation is ``log_prob``.

Every stage takes the full ``N x N`` image at its ``bits`` and returns nats of the part it models, so its bits/dim
is its share of the full image's and a chain's bits/dim is the sum of its stages'.
Sizes are our choice (the paper's appendix was not available): see the presets at the bottom.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from leangen.models.base import LikelihoodModel, register_model
from leangen.ops.masked import Likelihood, MaskedConvDecoder, to_unit
from leangen.ops.masked_static import StaticSampler
from leangen.ops.subscale import join_bits, merge_slices, split_bits, subscale_slices

SliceSet = Literal["all", "first", "rest"]


class ConditioningNet(nn.Module):
    """Embeds the visible slices: ``[B, in_channels, n, n]`` + target index ``[B]`` -> ``[B, hidden, n, n]`` (>= 0)."""

    def __init__(self, in_channels: int, num_slices: int, hidden: int, blocks: int, kernel: int):
        super().__init__()
        self.inp = nn.Conv2d(in_channels, hidden, kernel, padding=kernel // 2)
        self.index = nn.Embedding(num_slices, hidden)  # which slice is the target (the meta-position)
        self.blocks = nn.ModuleList(nn.Conv2d(hidden, hidden, kernel, padding=kernel // 2) for _ in range(blocks))

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        h = self.inp(x) + self.index(target)[:, :, None, None]
        for conv in self.blocks:
            h = h + conv(F.relu(h))
        return F.relu(h)


@register_model("spn")
class SubscalePixelNetwork(LikelihoodModel):
    """An SPN stage over ``resolution``² images at ``bits`` bits, subscale factor ``subscale`` (S).

    ``slices``: which slices it models (``all``, ``first`` = slice 0 only, ``rest`` = 1..S²-1 given slice 0).
    ``high_bits`` > 0 makes it a depth-upscaling stage: it models the low ``bits - high_bits`` bits of all slices
    given the ``high_bits`` most significant ones. ``log_prob``: uint8 ``[B, C, N, N]`` (0..2**bits-1) -> nats ``[B]``.
    ``likelihood``/``mixtures``/``coupled``: the per-sub-pixel distribution (``ops.masked.MaskedConvDecoder``).
    """

    sampling_is_cheap = False  # S² sequential slices of sub-pixel steps: no preview grids at snapshots

    def __init__(self, resolution: int = 32, channels: int = 3, bits: int = 8, subscale: int = 4,
                 slices: SliceSet = "all", high_bits: int = 0, hidden: int = 64, blocks: int = 4, kernel: int = 3,
                 cond_hidden: int = 64, cond_blocks: int = 2, cond_kernel: int = 3,
                 likelihood: Likelihood = "categorical", mixtures: int = 5, coupled: bool = True) -> None:
        super().__init__()
        if resolution % subscale:
            raise ValueError(f"subscale factor {subscale} must divide the resolution {resolution}")
        if not 1 <= bits <= 8 or not 0 <= high_bits < bits:
            raise ValueError(f"need 1 <= bits <= 8 and 0 <= high_bits < bits, got bits={bits}, high_bits={high_bits}")
        if slices not in ("all", "first", "rest") or (high_bits and slices != "all"):
            raise ValueError(f"slices must be all/first/rest (all for a depth stage), got {slices!r}")
        self.img_resolution, self.img_channels, self.bits = resolution, channels, bits
        self.subscale, self.slices, self.high_bits = subscale, slices, high_bits
        self.levels = 2 ** (bits - high_bits)   # values per modelled sub-pixel
        n = subscale * subscale
        self.targets = {"all": list(range(n)), "first": [0], "rest": list(range(1, n))}[slices]
        cond_in = n * channels * (2 if high_bits else 1)
        self.cond = ConditioningNet(cond_in, n, cond_hidden, cond_blocks, cond_kernel)
        self.decoder = MaskedConvDecoder(channels, self.levels, hidden, blocks, kernel, cond_channels=cond_hidden,
                                         likelihood=likelihood, mixtures=mixtures, coupled=coupled)

    # ------------------------------------------------------------------------------------------------ likelihoods

    def _split(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """uint8 images -> (modelled slices ``[B, S², C, n, n]``, high-bit slices or None)."""
        shape = (self.img_channels, self.img_resolution, self.img_resolution)
        if images.dim() != 4 or tuple(images.shape[1:]) != shape or images.is_floating_point():
            raise ValueError(f"expected integer images [B, {', '.join(map(str, shape))}], got "
                             f"{images.dtype} {tuple(images.shape)}")
        x = images.long()
        if not self.high_bits:
            return subscale_slices(x, self.subscale), None
        high, low = split_bits(x, self.high_bits, self.bits)
        return subscale_slices(low, self.subscale), subscale_slices(high, self.subscale)

    def condition(self, slices: torch.Tensor, high: torch.Tensor | None, target: torch.Tensor) -> torch.Tensor:
        """Embedding ``[B, cond_hidden, n, n]`` of the slices before ``target [B]`` (and all high bits)."""
        b, n2, c, h, w = slices.shape
        visible = (torch.arange(n2, device=slices.device)[None] < target[:, None]).float()
        x = to_unit(slices, self.levels) * visible[:, :, None, None, None]
        parts = [x.reshape(b, n2 * c, h, w)]
        if high is not None:
            parts.append(to_unit(high, 2 ** self.high_bits).reshape(b, n2 * c, h, w))
        return self.cond(torch.cat(parts, 1), target)

    def slice_log_prob(self, slices: torch.Tensor, high: torch.Tensor | None, target: torch.Tensor) -> torch.Tensor:
        """``log p(slice_target | earlier)`` per image, nats ``[B]``; ``target [B]`` may differ per image."""
        x = slices[torch.arange(slices.shape[0], device=slices.device), target]
        params = self.decoder(to_unit(x, self.levels), self.condition(slices, high, target))
        return self.decoder.log_prob(params, x)

    def log_prob(self, images: torch.Tensor) -> torch.Tensor:
        """Exact: the sum over every owned slice (S² decoder passes for ``slices="all"``)."""
        slices, high = self._split(images)
        b = slices.shape[0]
        return sum(self.slice_log_prob(slices, high, torch.full((b,), t, device=slices.device, dtype=torch.long))
                   for t in self.targets)  # type: ignore[return-value]

    def training_log_prob(self, images: torch.Tensor) -> torch.Tensor:
        """Unbiased one-slice estimate of ``log_prob``: one random owned slice per image, times their number.

        Draws from torch's global RNG (saved in snapshots, so resumed training draws the same slices).
        """
        slices, high = self._split(images)
        pick = torch.randint(len(self.targets), (slices.shape[0],)).to(slices.device)
        target = torch.tensor(self.targets, device=slices.device)[pick]
        return self.slice_log_prob(slices, high, target) * len(self.targets)

    # --------------------------------------------------------------------------------------------------- sampling

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0,
               prefix: torch.Tensor | None = None, cached: bool = True, static: bool = False) -> torch.Tensor:
        """uint8 ``[n, C, N, N]``. ``prefix``: what the stage is conditioned on — for ``rest`` an image whose slice 0
        is used, for a depth stage the ``high_bits``-bit image. A ``first`` stage returns slice 0 repeated S x S
        (nearest upsampling, so its slice 0 is exact). Uniforms come from ``generator`` (CPU), in slice order.
        ``static``: the cached path as one fixed-shape step per pixel (``leangen.ops.masked_static``), captured once
        as a CUDA graph on CUDA and reused for every slice; the same draws as ``cached``."""
        dev = self.decoder.out.weight.device
        s, r, c = self.subscale, self.img_resolution // self.subscale, self.img_channels
        slices = torch.zeros(n, s * s, c, r, r, dtype=torch.long, device=dev)
        high = None
        if self.high_bits or self.slices == "rest":
            if prefix is None:
                raise ValueError("this SPN stage samples given a prefix image (size/depth upscaling); use SPNChain")
            pre = subscale_slices(prefix.long().to(dev), s)
            if self.high_bits:
                high = pre
            else:
                slices[:, 0] = pre[:, 0]
        was_training = self.training
        self.eval()
        sampler = StaticSampler(self.decoder, n, r, r, temperature, with_cond=True) if static else None
        for t in self.targets:
            u = torch.rand(n, r, r, c, generator=generator, dtype=torch.float64)
            emb = self.condition(slices, high, torch.full((n,), t, device=dev, dtype=torch.long))
            if sampler is not None:
                slices[:, t] = sampler.sample(u, emb)
            else:
                slices[:, t] = self.decoder.sample(n, r, r, u, emb, temperature, cached)
        self.train(was_training)
        if self.slices == "first":
            slices[:, 1:] = slices[:, :1]
        out = merge_slices(slices, s)
        if self.high_bits:
            out = join_bits(merge_slices(high, s), out, self.bits - self.high_bits)  # type: ignore[arg-type]
        return out.to(torch.uint8)

    def extra_repr(self) -> str:
        return (f"resolution={self.img_resolution}, bits={self.bits}, S={self.subscale}, slices={self.slices}, "
                f"high_bits={self.high_bits}, likelihood={self.decoder.likelihood}")
