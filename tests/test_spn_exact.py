"""SPN and the full-image AR baseline held to definitions, not to their own code paths.

- Causality: the head parameters of a sub-pixel of the target slice may not move when that sub-pixel, any later one
  of the slice, or any later slice changes (conditioning that sees its own target slice fails here).
- Sampling order: a reference sampler written from the paper's definition (slice ``(i, j)`` is ``x[i::S, j::S]``,
  slices in raster order over ``(i, j)``, pixels in raster order, R -> G -> B) draws from the model's conditionals by
  inverse CDF with the same uniforms; ``sample`` must return the same image.
- Normalisation: tiny random-weight models at 1-3 bits, every image enumerated, probabilities sum to 1; marginals
  obtained by summing the enumerated joint equal the model's per-slice conditionals.
"""
from __future__ import annotations

import itertools

import pytest
import torch

from leangen.models.ar_decoder import ARDecoder
from leangen.models.spn import SubscalePixelNetwork
from leangen.models.spn_chain import SPNChain
from leangen.ops.masked import to_unit
from test_spn import _one_thread, randomize  # noqa: F401  (_one_thread: the shared autouse fixture)

NET = dict(hidden=6, blocks=2, kernel=3, cond_hidden=8, cond_blocks=1)


def strong(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random output layers large enough that the model is far from uniform."""
    return randomize(model, std=1.0, seed=seed)


def head_params(spn: SubscalePixelNetwork, images: torch.Tensor, t: int) -> torch.Tensor:
    """The decoder's head parameters ``[B, C, width, n, n]`` for target slice ``t`` of full-size ``images``, taken
    from inside ``slice_log_prob`` (so the conditioning path is the model's own)."""
    seen: list[torch.Tensor] = []
    hook = spn.decoder.register_forward_hook(lambda mod, inp, out: seen.append(out.detach().clone()))
    try:
        slices, high = spn._split(images)
        spn.slice_log_prob(slices, high, torch.full((images.shape[0],), t, dtype=torch.long))
    finally:
        hook.remove()
    assert len(seen) == 1
    return seen[0]


def every_image(channels: int, res: int, bits: int) -> torch.Tensor:
    """All ``2**(bits * channels * res²)`` images, uint8 ``[M, C, res, res]``."""
    dims = channels * res * res
    values = torch.tensor(list(itertools.product(range(2 ** bits), repeat=dims)), dtype=torch.uint8)
    return values.view(-1, channels, res, res)


def inverse_cdf(logp: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Smallest value whose CDF reaches ``u`` (log-probabilities ``[N, K]`` up to a constant, ``u [N]``)."""
    cdf = torch.softmax(logp.double(), -1).cumsum(-1)
    return (cdf < u[:, None]).sum(-1).clamp(max=logp.shape[-1] - 1)


# --------------------------------------------------------------------------------------------------- causality

@pytest.mark.parametrize("high_bits", [0, 3], ids=["all-slices", "depth-stage"])
def test_target_slice_subpixel_cannot_see_itself_or_anything_later(high_bits: int) -> None:
    spn = strong(SubscalePixelNetwork(resolution=8, bits=5, high_bits=high_bits, subscale=2, **NET))
    levels, s, n = spn.levels, 2, 4
    x = torch.randint(0, 32, (1, 3, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    order = torch.arange(3 * n * n).view(n, n, 3).permute(2, 0, 1)  # [C, n, n]: raster over pixels, R->G->B within

    def flip_low(img: torch.Tensor, c: int, i: int, j: int) -> torch.Tensor:
        """Change the modelled (low) bits of one sub-pixel of the full image."""
        y = img.clone()
        y[0, c, i, j] = (y[0, c, i, j] // levels) * levels + (levels - 1 - y[0, c, i, j] % levels)
        return y

    for t, (oi, oj) in enumerate((a, b) for a in range(s) for b in range(s)):  # slice t = x[oi::S, oj::S]
        base = head_params(spn, x, t)[0]
        for c, i, j in [(0, 0, 0), (1, 1, 2), (2, 3, 3), (0, 2, 1)]:
            moved = (head_params(spn, flip_low(x, c, oi + s * i, oj + s * j), t)[0] - base).abs().amax(1)
            me = order[c, i, j]
            assert moved[order <= me].max() == 0, f"slice {t}: a sub-pixel's head sees ({c},{i},{j}) at or after it"
            if me < order.max():
                assert moved[order > me].max() > 0  # the decoder is really autoregressive within the slice
        # every later slice changed at once: nothing of slice t moves
        later = x.clone()
        for u, (li, lj) in enumerate((a, b) for a in range(s) for b in range(s)):
            if u > t:
                for c in range(3):
                    for i in range(n):
                        for j in range(n):
                            later = flip_low(later, c, li + s * i, lj + s * j)
        assert torch.equal(head_params(spn, later, t)[0], base), f"slice {t} sees a later slice"
        if t:  # and the conditioning is real: an earlier slice moves everything
            pi, pj = divmod(t - 1, s)
            earlier = flip_low(x, 1, pi + s, pj + s)
            assert (head_params(spn, earlier, t)[0] - base).abs().max() > 0


# ---------------------------------------------------------------------------------------------------- sampling

def reference_spn_sample(spn: SubscalePixelNetwork, n: int, gen: torch.Generator,
                         high_image: torch.Tensor | None = None) -> torch.Tensor:
    """Sample from the model's conditionals in the paper's order, one sub-pixel at a time, uniforms drawn per slice as
    ``[n, h, w, C]`` (the documented layout). ``high_image``: the given high-bit image of a depth stage."""
    s, big, c_n = spn.subscale, spn.img_resolution, spn.img_channels
    r = big // s
    low = torch.zeros(n, c_n, big, big, dtype=torch.long)
    shift = spn.bits - spn.high_bits
    for t, (oi, oj) in enumerate((a, b) for a in range(s) for b in range(s)):
        u = torch.rand(n, r, r, c_n, generator=gen, dtype=torch.float64)
        for i in range(r):
            for j in range(r):
                for c in range(c_n):
                    full = low if high_image is None else (high_image.long() << shift) | low
                    logits = head_params(spn, full.to(torch.uint8), t)[:, c, :, i, j]
                    low[:, c, oi + s * i, oj + s * j] = inverse_cdf(logits, u[:, i, j, c])
    return (low if high_image is None else (high_image.long() << shift) | low).to(torch.uint8)


@pytest.mark.parametrize("channels,subscale", [(3, 2), (1, 4)])
def test_spn_samples_slices_in_the_papers_order(channels: int, subscale: int) -> None:
    spn = strong(SubscalePixelNetwork(resolution=8, channels=channels, bits=3, subscale=subscale, **NET)).eval()
    ref = reference_spn_sample(spn, 2, torch.Generator().manual_seed(5))
    got = spn.sample(2, torch.Generator().manual_seed(5))
    assert ref.unique().numel() > 4
    assert torch.equal(got, ref)


def test_depth_stage_samples_the_low_bits_in_the_papers_order() -> None:
    spn = strong(SubscalePixelNetwork(resolution=4, channels=3, bits=4, high_bits=2, subscale=2, **NET)).eval()
    high = torch.randint(0, 4, (2, 3, 4, 4), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    ref = reference_spn_sample(spn, 2, torch.Generator().manual_seed(6), high_image=high)
    assert torch.equal(spn.sample(2, torch.Generator().manual_seed(6), prefix=high), ref)


def test_ar_baseline_samples_in_raster_then_channel_order() -> None:
    ar = strong(ARDecoder(resolution=4, bits=3, hidden=6, blocks=2)).eval()
    gen = torch.Generator().manual_seed(2)
    u = torch.rand(2, 4, 4, 3, generator=gen, dtype=torch.float64)
    img = torch.zeros(2, 3, 4, 4, dtype=torch.long)
    for i in range(4):
        for j in range(4):
            for c in range(3):
                with torch.no_grad():
                    logits = ar.decoder(to_unit(img, 8))[:, c, :, i, j]
                img[:, c, i, j] = inverse_cdf(logits, u[:, i, j, c])
    assert img.unique().numel() > 3
    assert torch.equal(ar.sample(2, torch.Generator().manual_seed(2)), img.to(torch.uint8))


# ----------------------------------------------------------------------------------------------- normalisation

def assert_normalised(log_probs: torch.Tensor, groups: int = 1, spread: float = 2.0) -> None:
    """``log_probs`` of every image (grouped in ``groups`` equal consecutive blocks when each block is a conditional
    distribution) sum to 1, and the distribution is far from uniform (so the check means something)."""
    lp = log_probs.double().view(groups, -1)
    torch.testing.assert_close(lp.logsumexp(1), torch.zeros(groups, dtype=torch.float64), atol=1e-4, rtol=0)
    assert float(lp.max() - lp.min()) > spread


@pytest.mark.parametrize("channels,res,bits,subscale,head", [
    (1, 2, 2, 2, {}),                                                   # 256 images, 1-pixel slices
    (1, 4, 1, 2, {}),                                                   # 65,536 images, 2x2 slices
    (3, 2, 1, 2, {}),                                                   # 4,096 images, three channels
    (3, 2, 1, 1, {}),                                                   # S = 1: one slice, plain AR
    (1, 2, 3, 2, dict(likelihood="logistic_mixture", mixtures=3)),      # 4,096 images, mixture head
    (3, 2, 1, 2, dict(likelihood="logistic_mixture", mixtures=2)),      # coupled mixture over R, G, B
], ids=["1x2x2-2bit", "1x4x4-1bit", "3x2x2-1bit", "3x2x2-S1", "mixture-3bit", "mixture-rgb"])
def test_spn_probabilities_of_every_image_sum_to_one(channels: int, res: int, bits: int, subscale: int,
                                                     head: dict) -> None:
    spn = strong(SubscalePixelNetwork(resolution=res, channels=channels, bits=bits, subscale=subscale, **NET,
                                      **head)).eval()
    with torch.no_grad():
        assert_normalised(spn.log_prob(every_image(channels, res, bits)))


def test_spn_conditionals_are_the_enumerated_joints_marginals() -> None:
    """p(slices <= t) / p(slices < t), both summed from the enumerated joint, is exp(slice_log_prob(t))."""
    spn = strong(SubscalePixelNetwork(resolution=2, channels=1, bits=2, subscale=2, **NET)).eval()
    x = every_image(1, 2, 2)  # slice t is pixel (t // 2, t % 2): itertools order makes the last slice fastest
    with torch.no_grad():
        joint = spn.log_prob(x).double().view(4, 4, 4, 4)  # indexed by the values of slices 0, 1, 2, 3
        slices, _ = spn._split(x)
        for t in range(4):
            cond = spn.slice_log_prob(slices, None, torch.full((256,), t)).double().view(4, 4, 4, 4)
            upto = joint.logsumexp(tuple(range(t + 1, 4))) if t < 3 else joint
            before = joint.logsumexp(tuple(range(t, 4)))
            expected = upto - before.reshape(before.shape + (1,) * (upto.dim() - before.dim()))
            got = cond[(...,) + (0,) * (3 - t)]  # the conditional does not depend on later slices
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_upscaling_stages_and_the_chain_are_normalised() -> None:
    first = strong(SubscalePixelNetwork(resolution=2, channels=1, bits=1, subscale=2, slices="first", **NET), 1)
    rest = strong(SubscalePixelNetwork(resolution=2, channels=1, bits=1, subscale=2, slices="rest", **NET), 2)
    depth = strong(SubscalePixelNetwork(resolution=2, channels=1, bits=2, high_bits=1, subscale=2, **NET), 3)
    x = every_image(1, 2, 2)   # 256 images at 2 bits; the last pixel varies fastest
    hi = x >> 1
    with torch.no_grad():
        # size upscaling: for each value of slice 0 (pixel (0, 0), the slowest digit) the rest sums to 1
        assert_normalised(rest.log_prob(every_image(1, 2, 1)), groups=2, spread=0.1)
        assert_normalised(first.log_prob(every_image(1, 2, 1)).view(2, 8)[:, 0], spread=0.01)  # slice 0 alone
        # depth: for each high-bit image the low bits sum to 1 (group by the high bits: sort by them)
        key = (hi.flatten(1).long() * torch.tensor([8, 4, 2, 1])).sum(1)
        assert_normalised(depth.log_prob(x)[key.argsort(stable=True)], groups=16)
        chain = SPNChain.from_stages(first, rest, depth).eval()
        assert_normalised(chain.log_prob(x))


@pytest.mark.parametrize("channels,res,bits,head", [
    (1, 4, 1, {}), (3, 2, 1, {}), (1, 2, 3, dict(likelihood="logistic_mixture", mixtures=3)),
], ids=["1x4x4-1bit", "3x2x2-1bit", "mixture-3bit"])
def test_ar_baseline_probabilities_of_every_image_sum_to_one(channels: int, res: int, bits: int,
                                                             head: dict) -> None:
    ar = strong(ARDecoder(resolution=res, channels=channels, bits=bits, hidden=6, blocks=2, **head)).eval()
    with torch.no_grad():
        assert_normalised(ar.log_prob(every_image(channels, res, bits)))
