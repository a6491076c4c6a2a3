"""Wavelet discriminator (Haar input decomposition, spectral norm), its StyleNAT preset training and resuming through
the one loop, and balanced consistency regularization (bCR) as an additive option of the GAN objective."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.data import TensorDataset

from leangen.models.base import PretrainedModel
from leangen.models.wavelet_discriminator import WaveletDiscriminator
from leangen.ops.wavelets import haar_dwt2d, haar_idwt2d
from leangen.registry import get_preset
from leangen.train import TrainOptions, train

SMALL_G = {"channels": [32, 32, 32, 32], "min_heads": 2, "z_dim": 32, "w_dim": 32, "mapping_layers": 2}
SMALL_D = {"channel_base": 16, "max_channels": 16}
TINY_SG2 = {"G": {"channel_base": 16, "max_channels": 16, "z_dim": 32, "w_dim": 32, "mapping_layers": 2},
            "D": {"channel_base": 16, "max_channels": 16}}


def _images(n: int = 8) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g))


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "stats.jsonl").read_text().splitlines()]


# ----------------------------------------------------------------------------------------------------------------------
# Haar transform

def test_haar_is_exactly_invertible_and_matches_a_direct_convolution() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(-128, 128, (2, 3, 8, 12), generator=g).float()  # integers: every step is exact in float
    y = haar_dwt2d(x)
    assert y.shape == (2, 12, 4, 6)
    assert torch.equal(haar_idwt2d(y), x)
    c = torch.randint(-128, 128, (2, 12, 4, 6), generator=g).float()
    assert torch.equal(haar_dwt2d(haar_idwt2d(c)), c)

    # Direct: 2x2 stride-2 correlation with the separable filters low = [1, 1]/sqrt2, high = [-1, 1]/sqrt2,
    # bands [LL, LH, HL, HH] (first letter along y), each band stacked over the 3 colour channels.
    lo = torch.tensor([1.0, 1.0]) / math.sqrt(2)
    hi = torch.tensor([-1.0, 1.0]) / math.sqrt(2)
    xr = torch.randn(2, 3, 8, 12, generator=g)
    bands = []
    for fy, fx in ((lo, lo), (lo, hi), (hi, lo), (hi, hi)):
        k = (fy[:, None] * fx[None, :]).expand(3, 1, 2, 2)
        bands.append(F.conv2d(xr, k, stride=2, groups=3))
    torch.testing.assert_close(haar_dwt2d(xr), torch.cat(bands, 1), rtol=0, atol=1e-6)
    # orthonormal: energy preserved; a constant image only has LL = 2 * value
    torch.testing.assert_close(haar_dwt2d(xr).square().sum(), xr.square().sum())
    const = haar_dwt2d(torch.full((1, 3, 4, 4), 0.25))
    assert torch.equal(const[:, :3], torch.full((1, 3, 2, 2), 0.5)) and not const[:, 3:].any()
    with pytest.raises(ValueError, match="even"):
        haar_dwt2d(torch.zeros(1, 3, 5, 4))


# ----------------------------------------------------------------------------------------------------------------------
# the discriminator

def _linear_layers(D: nn.Module) -> list[nn.Module]:
    return [m for m in D.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def test_wavelet_discriminator_has_spectral_norm_on_every_layer(tmp_path: Path) -> None:
    torch.manual_seed(0)
    D = WaveletDiscriminator(resolution=32, **SMALL_D)
    layers = _linear_layers(D)
    assert len(layers) == 1 + 2 * 2 + 2 + 2 + 1  # 3 FromRGB 1x1 + 2 ConvBlocks x 2 + final conv + 2 linears
    assert all(parametrize.is_parametrized(m, "weight") for m in layers)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():  # raw weights of spectral norm 4: the layers must still see weights of spectral norm 1
        for m in layers:
            w = m.parametrizations.weight.original
            w.mul_(4.0 / torch.linalg.matrix_norm(w.flatten(1), ord=2))
    for _ in range(40):  # power iterations run in training-mode forwards (one each)
        D(x[:1])
    for m in layers:
        sigma = float(torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2))
        # power iteration converges slowly when the top singular values are close, hence 5%
        assert abs(sigma - 1.0) < 0.05, (m, sigma)
    assert D(x).shape == (4, 1)
    # without SN: no parametrizations (equalized-lr layers instead)
    assert not any(parametrize.is_parametrized(m) for m in WaveletDiscriminator(resolution=32, spectral_norm=False,
                                                                              **SMALL_D).modules())
    # save/load keeps the SN vectors: identical outputs in eval mode
    D.eval()
    D.save_pretrained(tmp_path / "D")
    D2 = PretrainedModel.from_pretrained(tmp_path / "D")
    assert isinstance(D2, WaveletDiscriminator)
    torch.testing.assert_close(D2(x), D(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="power of two"):
        WaveletDiscriminator(resolution=48)


def test_wavelet_preset_trains_and_resumes_bit_exactly(tmp_path: Path) -> None:
    preset = get_preset("stylenat-tiny32-wavelet")
    assert preset.components["D"][0] == "wavelet-discriminator"
    assert preset.training["bcr_real"] == preset.training["bcr_fake"] == 10.0
    assert get_preset("stylenat-256-wavelet").build("D").config["spectral_norm"] is True

    def opts(where: Path, steps: int) -> TrainOptions:
        # R1 every step so that its double backward through the spectral norm runs on both sides of the resume
        return TrainOptions(preset="stylenat-tiny32-wavelet", data="mem", outdir=str(where / "runs"), batch=4,
                            tick=0.004, snap=1, steps=steps, device="cpu", progress=False, grid=4, metrics=[],
                            overrides={"G": SMALL_G, "D": SMALL_D}, hparams={"r1_interval": 1})

    data = _images()
    straight = train(opts(tmp_path / "a", 2), data)
    first = train(opts(tmp_path / "b", 1), data)
    resumed = train(TrainOptions(resume=str(first.run_dir), steps=2, device="cpu", progress=False), data)
    assert resumed.step == 2
    for role in ("G", "G_ema", "D"):
        wa = load_file(str(straight.snapshot / role / "model.safetensors"))  # type: ignore[operator]
        wb = load_file(str(resumed.snapshot / role / "model.safetensors"))  # type: ignore[operator]
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), role
        if role == "D":
            assert any(k.endswith("._u") for k in wa)  # the power-iteration state travels with the snapshot
    rows = _rows(straight.run_dir)
    assert {"loss_D", "r1_penalty", "bcr_real", "bcr_fake"} <= set().union(*rows)


# ----------------------------------------------------------------------------------------------------------------------
# bCR

def test_bcr_adds_stats_and_changes_d_only_when_enabled(tmp_path: Path) -> None:
    data = _images()

    def run(name: str, **hp: object) -> tuple[dict, list[dict]]:
        o = TrainOptions(preset="stylegan2-tiny32", data="mem", outdir=str(tmp_path / name), batch=4, tick=0.004,
                         snap=1, steps=1, device="cpu", progress=False, grid=4, metrics=[], overrides=TINY_SG2,
                         hparams={"r1_gamma": 0.0, **hp})  # no R1: only the main D step can differ
        res = train(o, data)
        return ({role: load_file(str(res.snapshot / role / "model.safetensors"))  # type: ignore[operator]
                 for role in ("G", "D")}, _rows(res.run_dir))

    base, base_rows = run("base")
    # weights 0 (the default): whatever bcr_augment says, nothing changes -- no extra D calls, no random draws
    off, off_rows = run("off", bcr_real=0.0, bcr_fake=0.0, bcr_augment="flip,color,translation,cutout")
    on, on_rows = run("on", bcr_real=10.0, bcr_fake=10.0)
    real_only, real_rows = run("real", bcr_real=10.0)
    same = lambda a, b: all(torch.equal(a[k], b[k]) for k in a)  # noqa: E731
    assert same(base["D"], off["D"]) and same(base["G"], off["G"])
    assert not same(base["D"], on["D"]) and not same(on["D"], real_only["D"])
    assert same(base["G"], on["G"])  # step 0 updates G before D: bCR only touches D's update
    keys = lambda rows: set().union(*rows)  # noqa: E731
    assert not {"bcr_real", "bcr_fake"} & (keys(base_rows) | keys(off_rows))
    assert {"bcr_real", "bcr_fake"} <= keys(on_rows)
    assert "bcr_real" in keys(real_rows) and "bcr_fake" not in keys(real_rows)
    assert all(r["bcr_real"] >= 0 for r in on_rows if "bcr_real" in r)
    with pytest.raises(ValueError, match="bcr_augment"):
        run("bad", bcr_real=1.0, bcr_augment="none")
