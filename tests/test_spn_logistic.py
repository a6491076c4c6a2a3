"""The discretized logistic mixture head of the SPN family: exact probabilities, exact bits/dim, cached == naive
sampling, temperature, and a tiny preset through the training loop and ``leangen.load``."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import leangen
from leangen.models.ar_decoder import ARDecoder
from leangen.models.spn import SubscalePixelNetwork
from leangen.ops.masked import MaskedConvDecoder, discretized_logistic_mixture_log_pmf, mixture_width, to_unit
from leangen.train import TrainOptions, train
from test_spn import _one_thread, images  # noqa: F401  (_one_thread: the shared autouse fixture)
from test_spn import randomize as _randomize


def randomize(model: torch.nn.Module) -> torch.nn.Module:
    """Wider random output layers than test_spn's, so mixture weights, means, scales and coefficients all vary."""
    return _randomize(model, std=0.5)


MIX = dict(likelihood="logistic_mixture", mixtures=3)
SMALL = dict(resolution=8, hidden=6, blocks=2, kernel=3, cond_hidden=8, cond_blocks=1, **MIX)


# ---------------------------------------------------------------------------------------------------- the pmf

@pytest.mark.parametrize("levels", [2, 32, 256])
def test_pmf_sums_to_one_and_matches_the_cdf_differences(levels: int) -> None:
    g = torch.Generator().manual_seed(levels)
    k = 4
    log_w = torch.log_softmax(torch.randn(50, k, generator=g, dtype=torch.float64), -1)
    mean = torch.rand(50, k, generator=g, dtype=torch.float64) * 3 - 1.5     # some outside [-1, 1]: tails matter
    log_scale = torch.rand(50, k, generator=g, dtype=torch.float64) * 9 - 7  # scales from ~1e-3 to ~7
    every = torch.arange(levels).expand(50, -1)
    logp = discretized_logistic_mixture_log_pmf(log_w, mean, log_scale, every, levels)
    assert logp.shape == (50, levels) and torch.isfinite(logp).all()
    torch.testing.assert_close(logp.exp().sum(-1), torch.ones(50, dtype=torch.float64), atol=1e-12, rtol=0)
    # reference: CDF differences at the bin edges, value 0 and levels-1 taking the tails
    x = (every.double() * 2 / (levels - 1) - 1)[..., None]  # to_unit in float64
    half = 1.0 / (levels - 1)
    cdf = lambda t: torch.sigmoid((t - mean[:, None]) * torch.exp(-log_scale[:, None]))  # noqa: E731
    upper = torch.where(every[..., None] == levels - 1, 1.0, cdf(x + half))
    lower = torch.where(every[..., None] == 0, 0.0, cdf(x - half))
    ref = ((upper - lower) * log_w.exp()[:, None]).sum(-1)
    torch.testing.assert_close(logp.exp(), ref, atol=1e-12, rtol=1e-9)


def test_decoder_scoring_equals_its_per_subpixel_distributions() -> None:
    """``log_prob`` (training, all at once) and ``value_log_probs`` (sampling, one sub-pixel with the pixel's earlier
    channels) are the same distribution, coupling included; every sub-pixel's probabilities sum to 1."""
    dec = randomize(MaskedConvDecoder(channels=3, levels=16, hidden=9, blocks=1, kernel=3, **MIX))
    assert dec.width == mixture_width(3, 3, True) == 15
    x = images(4, n=2, res=4)
    params = dec(to_unit(x, 16))
    total = torch.zeros(2, dtype=torch.float64)
    for i in range(4):
        for j in range(4):
            for c in range(3):
                lp = dec.value_log_probs(params[:, c, :, i, j], x[:, :c, i, j], c)
                torch.testing.assert_close(lp.exp().sum(-1), torch.ones(2, dtype=torch.float64))
                total += lp.gather(1, x[:, c, i, j, None].long())[:, 0]
    torch.testing.assert_close(dec.log_prob(params, x).double(), total, atol=1e-4, rtol=1e-5)
    # the coupling is real: G's distribution moves with R's value at the same pixel
    p = params[:1, 1, :, 0, 0]
    assert not torch.allclose(dec.value_log_probs(p, torch.tensor([[0]]), 1),
                              dec.value_log_probs(p, torch.tensor([[15]]), 1))
    uncoupled = MaskedConvDecoder(channels=3, levels=16, hidden=9, blocks=1, kernel=3, coupled=False, **MIX)
    assert uncoupled.width == 9


# ---------------------------------------------------------------------------------------------------- exactness

def independent_pixel_bits_per_dim(bias: torch.Tensor, x: torch.Tensor, levels: int, k: int) -> torch.Tensor:
    """Bits/dim of ``x [B, C, H, W]`` under PixelCNN++'s discretized logistic mixture with the same parameters
    ``bias [C, width]`` at every pixel (what a decoder with a zero output weight is), from the definition: bin
    ``x_v +- 1/(levels-1)`` of the logistic CDF, value 0 and ``levels-1`` taking the tails; channel ``c``'s means
    shifted by ``tanh(coef) * x`` of the pixel's earlier channels."""
    b = bias.double()
    unit = x.double() * 2 / (levels - 1) - 1                        # [B, C, H, W]
    half = 1.0 / (levels - 1)
    total = torch.zeros(x.shape[0], dtype=torch.float64)
    for c in range(x.shape[1]):
        w = torch.softmax(b[c, :k], 0)
        mean = b[c, k:2 * k].view(k, 1, 1, 1) + sum(torch.tanh(b[c, 3 * k + e * k:3 * k + (e + 1) * k]).view(k, 1, 1, 1)
                                                 * unit[None, :, e] for e in range(c))
        inv = torch.exp(-b[c, 2 * k:3 * k].clamp(-7, 7)).view(k, 1, 1, 1)
        v = unit[None, :, c]
        upper = torch.where(x[None, :, c] == levels - 1, 1.0, torch.sigmoid(inv * (v + half - mean)))
        lower = torch.where(x[None, :, c] == 0, 0.0, torch.sigmoid(inv * (v - half - mean)))
        p = ((upper - lower) * w.view(k, 1, 1, 1)).sum(0)           # [B, H, W]
        total += -torch.log2(p).flatten(1).sum(1)
    return total / x[0].numel()


@pytest.mark.parametrize("random_bias", [False, True], ids=["as-initialised", "random-bias"])
def test_zero_weight_models_have_the_exact_bits_per_dim_of_independent_pixels(random_bias: bool) -> None:
    """A zero output weight makes every sub-pixel's mixture the output bias: an independent-pixel model whose
    bits/dim is computed here from the definition (as initialised: means spread over [-1, 1], no coupling yet)."""
    x = images(8)
    spn = SubscalePixelNetwork(subscale=2, **SMALL)
    ar = ARDecoder(resolution=8, hidden=6, blocks=1, **MIX)
    for model in (spn, ar):
        out = model.decoder.out
        if random_bias:
            with torch.no_grad():
                out.bias.copy_(torch.randn(out.bias.shape, generator=torch.Generator().manual_seed(3)))
        expected = independent_pixel_bits_per_dim(out.bias.detach().view(3, -1), x, 256, 3)
        assert out.weight.abs().sum() == 0 and 4.0 < float(expected.mean()) < 12.0
        torch.testing.assert_close(model.bits_per_dim(x), expected, atol=2e-5, rtol=0)
    # as initialised, the components start apart (means spread over [-1, 1]), else zero weights keep them identical
    if not random_bias:
        assert spn.decoder.out.bias.view(3, -1)[:, 3:6].unique().numel() == 3


def test_log_prob_is_the_sum_over_slices() -> None:
    spn = randomize(SubscalePixelNetwork(subscale=2, **SMALL))
    x = images(8)
    sl, _ = spn._split(x)
    per_slice = torch.stack([spn.slice_log_prob(sl, None, torch.full((3,), t)) for t in range(4)])
    torch.testing.assert_close(spn.log_prob(x), per_slice.sum(0))
    # random heads on random data: not the uniform 8.0 (the mixture path is really scoring the values)
    assert not torch.allclose(spn.bits_per_dim(x), torch.full((3,), 8.0, dtype=torch.float64), atol=1e-2)


# ----------------------------------------------------------------------------------------------------- sampling
# cached == naive and temperature with the mixture head: test_spn.py::test_cached_sampling_equals_naive_for_the_same_draws
# (parametrized over both heads).

def test_temperature_must_be_positive() -> None:
    spn = SubscalePixelNetwork(subscale=2, **SMALL)
    with pytest.raises(ValueError, match="temperature"):
        spn.sample(1, temperature=0.0)


# ------------------------------------------------------------------------------------------------ training loop

def test_logistic_preset_trains_and_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEANGEN_CACHE", str(tmp_path / "cache"))
    res = train(TrainOptions(preset="spn-tiny-32-logistic", data="openmoji-32-n64", steps=2, batch=4, device="cpu",
                             progress=False, metrics=[], outdir=str(tmp_path / "runs")))
    model = leangen.load(res.run_dir)
    assert isinstance(model, SubscalePixelNetwork)
    assert model.config["likelihood"] == "logistic_mixture" and model.config["mixtures"] == 5
    assert model.decoder.likelihood == "logistic_mixture"
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    assert torch.isfinite(model.bits_per_dim(x)).all()
    assert any(p.abs().sum() > 0 for n, p in model.named_parameters() if "decoder.out.weight" in n)  # it trained
