"""Masked (causal) convolutions and an autoregressive decoder over sub-pixels, with cached and naive sampling.

Order: pixels in raster order, channels R -> G -> B within a pixel (PixelCNN, van den Oord et al. 2016). Hidden
channels are split into ``C`` equal groups tied to the image channels; a mask of type ``A`` lets output group ``g``
see input groups ``< g`` at the centre pixel (the first layer: a sub-pixel never sees itself), type ``B`` groups
``<= g`` (every later layer). Rows above and pixels to the left are always visible, everything after never.

The plain masked stack has PixelCNN's blind spot (pixels above-right beyond the kernel reach are never seen); the
SPN's conditioning embedding covers it there. A gated vertical/horizontal stack would remove it; not done here.

Cached sampling (``MaskedConvDecoder.sample(cached=True)``) keeps every layer's activations in padded buffers and,
for each new sub-pixel, recomputes only the current pixel's column of the network from ``kernel x kernel`` windows
of those buffers: ``O(layers * hidden^2 * k^2)`` work per step instead of the whole slice (``cached=False``, the
reference it is tested against). Both paths take the same uniforms, so they draw the same samples.

Likelihoods per sub-pixel: a categorical over the ``levels`` values (default), or PixelCNN++'s discretized logistic
mixture (Salimans et al. 2017) with exact bin probabilities. Sampling draws from the exact discrete distribution of
either by inverse CDF; temperature ``T`` reshapes it to ``p ** (1 / T)`` (renormalised) for both heads.
"""
from __future__ import annotations

import math
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn


def channel_groups(num: int, groups: int, per: int = 0) -> torch.Tensor:
    """Group id of each of ``num`` channels: ``per > 0`` -> ``i // per`` (logits laid out ``[C, K]``), else
    ``groups`` near-equal consecutive blocks (hidden channels)."""
    if per:
        return torch.arange(num) // per
    if num < groups:
        raise ValueError(f"{num} hidden channels cannot be split into {groups} channel groups")
    return torch.arange(num) * groups // num


def causal_mask(out_groups: torch.Tensor, in_groups: torch.Tensor, kernel: int,
                kind: Literal["A", "B"]) -> torch.Tensor:
    """``[out, in, k, k]`` float mask: rows above, pixels to the left, and the centre by channel group."""
    if kernel % 2 != 1:
        raise ValueError(f"masked convolutions need an odd kernel, got {kernel}")
    c = kernel // 2
    mask = torch.zeros(len(out_groups), len(in_groups), kernel, kernel)
    mask[:, :, :c, :] = 1
    mask[:, :, c, :c] = 1
    centre = out_groups[:, None] > in_groups[None, :] if kind == "A" else out_groups[:, None] >= in_groups[None, :]
    mask[:, :, c, c] = centre.float()
    return mask


class MaskedConv2d(nn.Module):
    """A ``kernel x kernel`` convolution (zero 'same' padding) whose weight is multiplied by ``causal_mask``."""

    def __init__(self, in_groups: torch.Tensor, out_groups: torch.Tensor, kernel: int, kind: Literal["A", "B"]):
        super().__init__()
        self.kernel = kernel
        self.weight = nn.Parameter(torch.empty(len(out_groups), len(in_groups), kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(len(out_groups)))
        # Derived from the constructor arguments: not saved with the weights.
        self.register_buffer("mask", causal_mask(out_groups, in_groups, kernel, kind), persistent=False)
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)  # nn.Conv2d's default initialisation
        with torch.no_grad():
            self.weight.mul_(self.mask)

    def masked_weight(self) -> torch.Tensor:
        return self.weight * self.mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.masked_weight(), self.bias, padding=self.kernel // 2)


def to_unit(values: torch.Tensor, levels: int) -> torch.Tensor:
    """Integers ``0 .. levels-1`` -> floats in [-1, 1] (the decoder and conditioning inputs)."""
    return values.float() * (2.0 / (levels - 1)) - 1.0


def categorical_log_prob(logits: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Sum of ``log softmax(logits)[values]`` per item.

    logits ``[B, C, K, H, W]``, values int ``[B, C, H, W]`` in ``0..K-1`` -> nats ``[B]``.
    """
    logp = F.log_softmax(logits.float(), dim=2)
    return logp.gather(2, values.long().unsqueeze(2)).flatten(1).sum(1)


Likelihood = Literal["categorical", "logistic_mixture"]

#: Log-scales of the logistic components are clamped to this range (in units of the [-1, 1] value scale): the lower
#: bound is PixelCNN++'s (Salimans et al. 2017); the upper keeps ``1 - exp(-2 * half_bin / scale)`` well above 0.
LOG_SCALE_RANGE = (-7.0, 7.0)


def mixture_width(channels: int, mixtures: int, coupled: bool) -> int:
    """Parameters per sub-pixel of the mixture head: ``K`` weight logits, means, log-scales, and, when ``coupled``,
    ``K`` coefficients for each earlier channel of the pixel (laid out ``[C-1, K]``; channel ``c`` uses the first
    ``c`` rows, so the others are unused for the early channels — one width for every channel keeps the output
    layer's channel groups equal)."""
    return mixtures * (3 + (channels - 1 if coupled else 0))


def mixture_parts(params: torch.Tensor, earlier: torch.Tensor, mixtures: int
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One channel's head ``params [..., P]`` and the pixel's earlier channels ``earlier [..., c]`` (unit values in
    [-1, 1], ``c`` may be 0) -> (log mixture weights, means, log-scales), each ``[..., K]``.

    The mean of component ``k`` is ``mu_k + sum_c' tanh(coef_kc') * x_c'``: PixelCNN++'s linear dependence on the
    channels already generated within the pixel (none when the head is not coupled or ``c == 0``).
    """
    k, c = mixtures, earlier.shape[-1]
    log_w = F.log_softmax(params[..., :k], dim=-1)
    mean = params[..., k:2 * k]
    if c:
        coef = torch.tanh(params[..., 3 * k:3 * k + c * k].unflatten(-1, (c, k)))  # [..., c, K]
        mean = mean + (coef * earlier[..., :, None]).sum(-2)
    return log_w, mean, params[..., 2 * k:3 * k].clamp(*LOG_SCALE_RANGE)


def discretized_logistic_mixture_log_pmf(log_w: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor,
                                         values: torch.Tensor, levels: int) -> torch.Tensor:
    """Exact ``log P(value)`` of a discretized logistic mixture over ``0..levels-1``.

    ``log_w, mean, log_scale [..., K]`` (means/scales on the [-1, 1] scale of ``to_unit``), ``values`` int
    ``[..., V]`` -> ``[..., V]`` nats. Value ``v`` owns the bin ``x_v +- 1/(levels-1)``; value 0 takes the whole
    lower tail and ``levels-1`` the upper one, so the probabilities of all values sum to 1 exactly. Each bin's mass
    ``sigmoid(a) - sigmoid(b)`` (``a > b``) is evaluated as ``sigmoid(a) * sigmoid(-b) * (1 - exp(b - a))``: stable in
    log space without PixelCNN++'s fallback to the density at the bin centre.
    """
    # Bin edges straight from the integers, ``(2v +- 1) / (levels - 1) - 1``: value v's upper edge is then bit for bit
    # value v+1's lower edge, so the masses telescope to 1 (``to_unit(v) +- half`` would round differently).
    twice = 2 * values.to(mean.dtype)[..., None]                 # [..., V, 1]
    inv = torch.exp(-log_scale)[..., None, :]                    # [..., 1, K]
    m = mean[..., None, :] + 1.0
    a, b = inv * ((twice + 1) / (levels - 1) - m), inv * ((twice - 1) / (levels - 1) - m)
    low, high = (values == 0)[..., None], (values == levels - 1)[..., None]
    zero = torch.zeros((), dtype=a.dtype, device=a.device)
    log_mass = (torch.where(high, zero, F.logsigmoid(a)) + torch.where(low, zero, F.logsigmoid(-b))
                + torch.where(low | high, zero, torch.log(-torch.expm1(b - a))))
    return torch.logsumexp(log_w[..., None, :] + log_mass, dim=-1)


def draw(logits: torch.Tensor, uniforms: torch.Tensor, temperature: float) -> torch.Tensor:
    """Inverse-CDF draw from ``softmax(logits / temperature)``: logits ``[N, K]``, uniforms ``[N]`` in [0, 1) -> ``[N]``
    (int64, ``0..K-1``).

    Computed in float64 so that the cached and naive paths, whose logits differ by rounding only, draw the same value.
    """
    cdf = torch.softmax(logits.double() / temperature, dim=-1).cumsum(-1)
    return (cdf < uniforms.to(cdf.device, torch.float64)[:, None]).sum(-1).clamp_(max=logits.shape[-1] - 1)


class _Block(nn.Module):
    """``h + proj(relu(conv_B(relu(h)) + cond))``: a residual masked block with an optional conditioning input."""

    def __init__(self, groups: torch.Tensor, kernel: int, cond_channels: int):
        super().__init__()
        self.conv = MaskedConv2d(groups, groups, kernel, "B")
        self.proj = MaskedConv2d(groups, groups, 1, "B")
        self.cond = nn.Conv2d(cond_channels, len(groups), 1) if cond_channels else None


class MaskedConvDecoder(nn.Module):
    """Autoregressive decoder of ``[B, C, H, W]`` integer images with ``levels`` values per sub-pixel.

    ``forward(x, cond)``: ``x`` float ``[B, C, H, W]`` in [-1, 1] (``to_unit``), ``cond`` ``[B, cond_channels, H, W]``
    or None -> head parameters ``[B, C, width, H, W]``; those of sub-pixel ``(c, i, j)`` depend only on sub-pixels
    before it and on ``cond``. ``likelihood``: ``categorical`` (``width = levels`` logits; the output layer starts
    at zero, so an untrained decoder is exactly uniform) or ``logistic_mixture`` (PixelCNN++'s discretized logistic
    mixture, ``mixtures`` components, ``width = mixture_width(...)``; ``coupled`` adds the linear dependence of the
    means on the pixel's earlier channels). ``log_prob(params, values)`` scores either.
    """

    def __init__(self, channels: int, levels: int, hidden: int, blocks: int, kernel: int, cond_channels: int = 0,
                 likelihood: Likelihood = "categorical", mixtures: int = 5, coupled: bool = True):
        super().__init__()
        if likelihood not in ("categorical", "logistic_mixture"):
            raise ValueError(f"likelihood must be categorical or logistic_mixture, got {likelihood!r}")
        if mixtures < 1:
            raise ValueError(f"mixtures must be >= 1, got {mixtures}")
        self.channels, self.levels, self.kernel = channels, levels, kernel
        self.likelihood, self.mixtures = likelihood, mixtures
        self.width = levels if likelihood == "categorical" else mixture_width(channels, mixtures, coupled)
        img, hid = channel_groups(channels, channels), channel_groups(hidden, channels)
        self.inp = MaskedConv2d(img, hid, kernel, "A")
        self.blocks = nn.ModuleList(_Block(hid, kernel, cond_channels) for _ in range(blocks))
        self.out = MaskedConv2d(hid, channel_groups(channels * self.width, channels, per=self.width), 1, "B")
        with torch.no_grad():
            self.out.weight.zero_()
            if likelihood == "logistic_mixture":
                # Zero weights give every component the same gradient, so they would never separate: start the
                # means spread evenly over [-1, 1] with scales of about their spacing (the mixture covers the range).
                k = mixtures
                bias = self.out.bias.view(channels, self.width)
                bias[:, k:2 * k] = torch.linspace(-1 + 1 / k, 1 - 1 / k, k)
                bias[:, 2 * k:3 * k] = math.log(1 / k)

    def _cond_terms(self, cond: torch.Tensor | None) -> list[torch.Tensor | None]:
        return [blk.cond(cond) if blk.cond is not None and cond is not None else None for blk in self.blocks]

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = self.inp(x)
        for blk, ct in zip(self.blocks, self._cond_terms(cond)):
            t = blk.conv(F.relu(h))
            h = h + blk.proj(F.relu(t if ct is None else t + ct))
        b, _, hh, ww = x.shape
        return self.out(F.relu(h)).view(b, self.channels, self.width, hh, ww)

    def log_prob(self, params: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """``params [B, C, width, H, W]`` (``forward``), values int ``[B, C, H, W]`` in ``0..levels-1`` -> nats ``[B]``."""
        if self.likelihood == "categorical":
            return categorical_log_prob(params, values)
        p = params.float().permute(0, 1, 3, 4, 2)               # [B, C, H, W, width]
        unit = to_unit(values, self.levels).permute(0, 2, 3, 1)  # [B, H, W, C]: earlier channels of each pixel
        total = params.new_zeros(params.shape[0], dtype=torch.float32)
        for c in range(self.channels):
            parts = mixture_parts(p[:, c], unit[..., :c], self.mixtures)
            logp = discretized_logistic_mixture_log_pmf(*parts, values[:, c, :, :, None].long(), self.levels)
            total = total + logp.flatten(1).sum(1)
        return total

    def value_log_probs(self, params: torch.Tensor, earlier: torch.Tensor, c: int) -> torch.Tensor:
        """Log-probabilities (categorical: logits, i.e. up to a constant) over every value of channel ``c``:
        ``params [N, width]``, ``earlier`` int ``[N, c]`` (the pixel's values so far) -> ``[N, levels]``, float64 (so
        that sampling paths differing by rounding agree). ``draw`` turns either into ``p ** (1 / temperature)``.
        """
        if self.likelihood == "categorical":
            return params.double()
        parts = mixture_parts(params.double(), to_unit(earlier, self.levels).double(), self.mixtures)
        every = torch.arange(self.levels, device=params.device).expand(params.shape[0], -1)
        return discretized_logistic_mixture_log_pmf(*parts, every, self.levels)

    @torch.no_grad()
    def sample(self, n: int, height: int, width: int, uniforms: torch.Tensor, cond: torch.Tensor | None = None,
               temperature: float = 1.0, cached: bool = True) -> torch.Tensor:
        """Draw ``[n, C, height, width]`` (int64) in raster/channel order; ``uniforms [n, height, width, C]``."""
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if tuple(uniforms.shape) != (n, height, width, self.channels):
            raise ValueError(f"uniforms must be [{n}, {height}, {width}, {self.channels}], got {tuple(uniforms.shape)}")
        step = self._cached_steps(n, height, width, cond) if cached else self._naive_steps(n, height, width, cond)
        out = torch.zeros(n, self.channels, height, width, dtype=torch.long, device=self.out.weight.device)
        # One host-to-device copy for the whole image, not one (synchronous) copy per sub-pixel.
        uniforms = uniforms.to(out.device, torch.float64)
        for i in range(height):
            for j in range(width):
                for c in range(self.channels):
                    v = draw(self.value_log_probs(step(i, j, c), out[:, :c, i, j], c), uniforms[:, i, j, c],
                             temperature)
                    out[:, c, i, j] = v
                    step.write(i, j, c, v)
        return out

    def _naive_steps(self, n: int, height: int, width: int, cond: torch.Tensor | None) -> "_Steps":
        """Reference path: the whole image through the network for every sub-pixel."""
        x = torch.zeros(n, self.channels, height, width, device=self.out.weight.device)

        def step(i: int, j: int, c: int) -> torch.Tensor:
            return self(x, cond)[:, c, :, i, j]

        def write(i: int, j: int, c: int, v: torch.Tensor) -> None:
            x[:, c, i, j] = to_unit(v, self.levels)

        return _Steps(step, write)

    def _cached_steps(self, n: int, height: int, width: int, cond: torch.Tensor | None) -> "_Steps":
        """Incremental path: per layer, one ``k x k`` window of cached activations per sub-pixel."""
        p, k, dev = self.kernel // 2, self.kernel, self.out.weight.device
        # Buffers padded by p on every side: the zero border is the convolutions' zero padding.
        xbuf = torch.zeros(n, self.channels, height + 2 * p, width + 2 * p, device=dev)
        hbufs = [torch.zeros(n, blk.conv.weight.shape[1], height + 2 * p, width + 2 * p, device=dev)
                 for blk in self.blocks]
        # A window times a flattened kernel is the convolution at one pixel; F.linear is far cheaper than conv2d
        # on a single k x k patch.
        w_in = self.inp.masked_weight().flatten(1)
        w_conv = [blk.conv.masked_weight().flatten(1) for blk in self.blocks]
        w_proj = [blk.proj.masked_weight().flatten(1) for blk in self.blocks]
        w_out = self.out.masked_weight().flatten(1)
        cterms = self._cond_terms(cond)

        def step(i: int, j: int, c: int) -> torch.Tensor:
            h = F.linear(xbuf[:, :, i:i + k, j:j + k].reshape(n, -1), w_in, self.inp.bias)
            for blk, hb, wc, wp, ct in zip(self.blocks, hbufs, w_conv, w_proj, cterms):
                hb[:, :, i + p, j + p] = h
                t = F.linear(F.relu(hb[:, :, i:i + k, j:j + k].reshape(n, -1)), wc, blk.conv.bias)
                if ct is not None:
                    t = t + ct[:, :, i, j]
                h = h + F.linear(F.relu(t), wp, blk.proj.bias)
            logits = F.linear(F.relu(h), w_out, self.out.bias)
            return logits.view(n, self.channels, self.width)[:, c]

        def write(i: int, j: int, c: int, v: torch.Tensor) -> None:
            xbuf[:, c, i + p, j + p] = to_unit(v, self.levels)

        return _Steps(step, write)


class _Steps:
    """A sampling path: ``steps(i, j, c)`` -> head parameters ``[n, width]`` of that sub-pixel; ``write`` records
    the draw."""

    def __init__(self, step: Callable[[int, int, int], torch.Tensor],
                 write: Callable[[int, int, int, torch.Tensor], None]) -> None:
        self._step, self.write = step, write

    def __call__(self, i: int, j: int, c: int) -> torch.Tensor:
        return self._step(i, j, c)
