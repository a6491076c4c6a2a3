"""Subscale Pixel Networks: exact bits/dim, causality, cached == naive sampling, the upscaling chain, and training
through the one loop (resume, load, sample)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import leangen
from leangen.models.ar_decoder import ARDecoder
from leangen.models.base import LikelihoodModel
from leangen.models.spn import SubscalePixelNetwork
from leangen.models.spn_chain import SPNChain
from leangen.ops.masked import MaskedConvDecoder, to_unit
from leangen.ops.subscale import subscale_slices
from leangen.registry import get_preset, list_presets
from leangen.train import TrainOptions, train

SMALL = dict(resolution=8, hidden=6, blocks=2, kernel=3, cond_hidden=8, cond_blocks=1)


@pytest.fixture(autouse=True)
def _one_thread():
    """Sub-pixel steps are tiny ops: one intra-op thread is much faster on a shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def randomize(model: torch.nn.Module, std: float = 0.3, seed: int = 0) -> torch.nn.Module:
    """Non-zero output layers (they start at zero = uniform), so the tests see real dependencies."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".out." in f".{name}":
                p.normal_(0, std)
    return model


def images(bits: int, n: int = 3, res: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 2 ** bits, (n, 3, res, res), generator=torch.Generator().manual_seed(seed),
                         dtype=torch.uint8)


# ---------------------------------------------------------------------------------------------------- exactness

@pytest.mark.parametrize("bits,s", [(8, 2), (5, 4), (3, 1)])
def test_untrained_models_are_uniform_exactly_bits_per_dim(bits: int, s: int) -> None:
    x = images(bits)
    spn = SubscalePixelNetwork(bits=bits, subscale=s, **SMALL)
    assert torch.allclose(spn.bits_per_dim(x), torch.full((3,), float(bits), dtype=torch.float64), atol=1e-6)
    ar = ARDecoder(resolution=8, bits=bits, hidden=6, blocks=1)
    assert torch.allclose(ar.bits_per_dim(x), torch.full((3,), float(bits), dtype=torch.float64), atol=1e-6)


def test_exact_log_prob_is_the_sum_over_slices_and_training_estimate_is_unbiased() -> None:
    spn = randomize(SubscalePixelNetwork(subscale=2, **SMALL))
    x = images(8)
    sl, _ = spn._split(x)
    per_slice = torch.stack([spn.slice_log_prob(sl, None, torch.full((3,), t)) for t in range(4)])
    exact = spn.log_prob(x)
    torch.testing.assert_close(exact, per_slice.sum(0))
    assert spn.bits_per_dim(x).min() > 8.0 + 1e-3  # random logits on random data: worse than uniform
    # the one-slice estimate is S² times one slice's term, so its mean over the slice draws is the exact value
    torch.manual_seed(0)
    est = spn.training_log_prob(x)
    torch.manual_seed(0)
    pick = torch.randint(4, (3,))  # the draw training_log_prob makes from the global RNG
    torch.testing.assert_close(est, 4 * per_slice[pick, torch.arange(3)])
    torch.testing.assert_close((4 * per_slice).mean(0), exact)


def test_decoder_is_causal_over_subpixels() -> None:
    dec = randomize(MaskedConvDecoder(channels=3, levels=8, hidden=9, blocks=2, kernel=3))
    x = to_unit(images(3, n=1, res=6), 8)
    base = dec(x)
    for (c, i, j) in [(0, 2, 3), (1, 2, 3), (2, 0, 5), (0, 5, 0)]:
        y = x.clone()
        y[0, c, i, j] = -y[0, c, i, j] + 0.1
        diff = (dec(y) - base).abs().amax(2)[0]  # [C, H, W]
        order = torch.arange(3 * 36).view(6, 6, 3).permute(2, 0, 1)  # raster over pixels, R->G->B within
        me = order[c, i, j]
        assert diff[order <= me].max() == 0, "a sub-pixel's logits depend on itself or a later one"
        assert diff[order > me].max() > 0


def test_conditioning_sees_only_earlier_slices() -> None:
    spn = randomize(SubscalePixelNetwork(subscale=2, **SMALL))
    x = images(8, n=1)
    sl, _ = spn._split(x)
    for t in range(4):
        ref = spn.slice_log_prob(sl, None, torch.tensor([t]))
        changed = sl.clone()
        changed[:, t + 1:] = 255 - changed[:, t + 1:]
        assert torch.equal(spn.slice_log_prob(changed, None, torch.tensor([t])), ref)
        if t:
            changed = sl.clone()
            changed[:, t - 1] = 255 - changed[:, t - 1]
            assert not torch.equal(spn.slice_log_prob(changed, None, torch.tensor([t])), ref)


# ----------------------------------------------------------------------------------------------------- sampling

@pytest.mark.parametrize("head", [{}, dict(likelihood="logistic_mixture", mixtures=3)], ids=["categorical", "mixture"])
def test_cached_sampling_equals_naive_for_the_same_draws(head: dict) -> None:
    dec = randomize(MaskedConvDecoder(channels=3, levels=16, hidden=9, blocks=2, kernel=5, cond_channels=4, **head))
    cond = torch.randn(2, 4, 5, 6)
    u = torch.rand(2, 5, 6, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    a = dec.sample(2, 5, 6, u, cond, cached=True)
    b = dec.sample(2, 5, 6, u, cond, cached=False)
    assert torch.equal(a, b) and a.unique().numel() > 4
    spn = randomize(SubscalePixelNetwork(bits=5, subscale=2, **SMALL, **head))
    a = spn.sample(2, torch.Generator().manual_seed(3))
    assert torch.equal(a, spn.sample(2, torch.Generator().manual_seed(3), cached=False))
    assert a.dtype == torch.uint8 and a.shape == (2, 3, 8, 8) and int(a.max()) < 32
    # a cold temperature concentrates the draws on the modes: fewer distinct values
    cold = spn.sample(2, torch.Generator().manual_seed(3), temperature=0.05)
    assert cold.unique().numel() < a.unique().numel()
    ar = randomize(ARDecoder(resolution=6, bits=4, hidden=6, blocks=1, **head))
    assert torch.equal(ar.sample(1, torch.Generator().manual_seed(0)),
                       ar.sample(1, torch.Generator().manual_seed(0), cached=False))


def test_chain_bits_per_dim_is_the_sum_of_its_stages_and_it_samples() -> None:
    first = randomize(SubscalePixelNetwork(bits=3, subscale=2, slices="first", **SMALL), seed=1)
    up = randomize(SubscalePixelNetwork(bits=3, subscale=2, slices="rest", **SMALL), seed=2)
    depth = randomize(SubscalePixelNetwork(bits=8, high_bits=3, subscale=2, **SMALL), seed=3)
    chain = SPNChain.from_stages(first, up, depth)
    x = images(8)
    hi = x >> 5
    stages = first.bits_per_dim(hi) + up.bits_per_dim(hi) + depth.bits_per_dim(x)
    torch.testing.assert_close(chain.bits_per_dim(x), stages)
    # untrained (zero output layers): 3 bits over 1/4 of the dims + 3 over 3/4 + 5 low bits = 8.0 exactly
    fresh = SPNChain(chain.config["stages"])
    assert torch.allclose(fresh.bits_per_dim(x), torch.full((3,), 8.0, dtype=torch.float64), atol=1e-6)
    s = chain.sample(2, torch.Generator().manual_seed(0))
    assert s.shape == (2, 3, 8, 8) and s.dtype == torch.uint8
    # the first stage's slice 0 and the upscaled 3-bit image survive as the high bits of the sample
    a = first.sample(2, torch.Generator().manual_seed(0))
    assert torch.equal(subscale_slices(s >> 5, 2)[:, 0], subscale_slices(a, 2)[:, 0])
    with pytest.raises(ValueError, match="prefix"):
        depth.sample(1)


# ------------------------------------------------------------------------------------------------------ presets

def test_presets_sizes() -> None:
    with torch.device("meta"):  # no memory, no initialisation time
        counts = {p.name: p.build("model").num_params() for p in list_presets("spn") + list_presets("ar-decoder")}
    assert counts["spn-imagenet64"] == 151_690_496   # near the paper's ~150M for its ImageNet-64 SPN (sizes ours)
    assert counts["spn-imagenet32"] == 26_295_296
    assert counts["spn-tiny-32"] == 112_032 and counts["ar-tiny-32"] == 108_384   # equal-parameter pair (< 4 %)
    assert counts["spn-tiny-32-5bit"] == 79_104 and counts["ar-tiny-32-5bit"] == 75_456
    assert counts["spn-celebahq256-5bit"] == 26_466_656 and counts["spn-celebahq256-depth"] == 26_909_024
    grid = {(p.resolution, p.components["model"][1].get("subscale"), p.components["model"][1].get("bits", 8))
            for p in list_presets("spn")}
    assert {(32, 4, 8), (64, 4, 8), (256, 8, 5), (256, 8, 3)} <= grid
    assert get_preset("spn-celebahq256-depth").components["model"][1]["high_bits"] == 3


# ------------------------------------------------------------------------------------------------ training loop

def _opts(tmp: Path, preset: str, **kw) -> TrainOptions:
    base = dict(preset=preset, data="openmoji-32-n64", outdir=str(tmp / "runs"), batch=4, tick=0.008, snap=1,
                device="cpu", progress=False, grid=4, metrics=[])
    base.update(kw)
    return TrainOptions(**base)


def test_tiny_chain_trains_resumes_loads_and_samples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEANGEN_CACHE", str(tmp_path / "cache"))
    straight = train(_opts(tmp_path / "a", "spn-tiny-32-depth", steps=4))
    first = train(_opts(tmp_path / "b", "spn-tiny-32-depth", steps=2))
    resumed = train(TrainOptions(resume=str(first.run_dir), steps=4, device="cpu", progress=False))
    from safetensors.torch import load_file
    wa = load_file(str(straight.snapshot / "model" / "model.safetensors"))
    wb = load_file(str(resumed.snapshot / "model" / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)  # same random slices drawn
    stages = [leangen.load(train(_opts(tmp_path / name, f"spn-tiny-32-{name}", steps=2)).run_dir)
              for name in ("first", "upscale")]
    depth = leangen.load(straight.run_dir)
    assert isinstance(depth, SubscalePixelNetwork) and isinstance(depth, LikelihoodModel)
    assert any(p.abs().sum() > 0 for n, p in depth.named_parameters() if "decoder.out" in n)  # it trained
    chain = SPNChain.from_stages(*stages, depth)
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    bpd = chain.bits_per_dim(x)
    torch.testing.assert_close(bpd, stages[0].bits_per_dim(x >> 5) + stages[1].bits_per_dim(x >> 5)
                               + depth.bits_per_dim(x))
    chain.save_pretrained(tmp_path / "chain")
    again = leangen.load(tmp_path / "chain")
    torch.testing.assert_close(again.bits_per_dim(x), bpd)
    img = again.generate([0], output_type="np")
    assert img.shape == (1, 32, 32, 3)
