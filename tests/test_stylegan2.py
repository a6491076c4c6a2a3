"""StyleGAN2 generator/discriminator, the shared ops they are built from, and save/load."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import leangen
from leangen.models.base import PretrainedModel, image_grid
from leangen.models.discriminators import StyleGAN2Discriminator
from leangen.models.stylegan2 import StyleGAN2Generator
from leangen.ops import ModulatedConv2d, upfirdn2d, make_kernel, Upsample
from leangen.registry import get_preset


@pytest.mark.parametrize("upsample", [False, True])
@pytest.mark.parametrize("demodulate", [False, True])
def test_modconv_scaled_and_grouped_paths_agree(upsample: bool, demodulate: bool) -> None:
    torch.manual_seed(0)
    conv = ModulatedConv2d(8, 6, 3, style_dim=16, demodulate=demodulate, upsample=upsample)
    x, w = torch.randn(3, 8, 8, 8), torch.randn(3, 16)
    a = conv(x, w, impl="scaled")
    b = conv(x, w, impl="grouped")
    assert a.shape == (3, 6, 16 if upsample else 8, 16 if upsample else 8)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    # gradients agree too (the scaled path is what training uses)
    ga = torch.autograd.grad(conv(x, w, impl="scaled").square().sum(), conv.weight)[0]
    gb = torch.autograd.grad(conv(x, w, impl="grouped").square().sum(), conv.weight)[0]
    torch.testing.assert_close(ga, gb, rtol=1e-3, atol=1e-4)


def test_demodulation_normalizes_output_scale() -> None:
    torch.manual_seed(0)
    conv = ModulatedConv2d(64, 64, 3, style_dim=16)
    y = conv(torch.randn(4, 64, 16, 16), torch.randn(4, 16) * 5)  # large styles must not blow up the output
    assert 0.5 < y[:, :, 2:-2, 2:-2].std().item() < 2.0


def test_upfirdn2d_matches_direct_definition() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 5)
    k = make_kernel([1, 3, 3, 1])
    # up=2 by explicit zero insertion, then padded correlation with the flipped kernel
    z = torch.zeros(2, 3, 10, 10)
    z[:, :, ::2, ::2] = x
    ref = F.conv2d(F.pad(z, [2, 1, 2, 1]), k.flip([0, 1])[None, None].repeat(3, 1, 1, 1), groups=3)
    torch.testing.assert_close(upfirdn2d(x, k, up=2, pad=(2, 1)), ref)
    # the 2x upsampler keeps a constant image constant (kernel gain compensates zero insertion) away from borders
    up = Upsample()(torch.ones(1, 1, 6, 6))
    assert up.shape == (1, 1, 12, 12)
    torch.testing.assert_close(up[..., 2:-2, 2:-2], torch.ones(1, 1, 8, 8))


def test_paper_parameter_counts() -> None:
    with torch.device("meta"):
        assert get_preset("stylegan2-256").build().num_params() == 30_034_338
        assert get_preset("stylegan2-512").build().num_params() == 30_276_583
        assert get_preset("stylegan2-1024").build().num_params() == 30_370_060
        assert StyleGAN2Generator(256).num_ws == 14


def test_tiny_forward_backward_shapes() -> None:
    p = get_preset("stylegan2-tiny32")
    G, D = p.build("G"), p.build("D")
    z = torch.randn(4, G.z_dim)
    img = G(z)
    assert img.shape == (4, 3, 32, 32) and torch.isfinite(img).all()
    logits = D(img)
    assert logits.shape == (4, 1)
    logits.sum().backward()
    assert all(p.grad is not None for p in G.parameters() if p.requires_grad and p is not G.mapping.w_avg)


def test_truncation_pulls_towards_w_avg() -> None:
    torch.manual_seed(0)
    G = get_preset("stylegan2-tiny32").build()
    z = torch.randn(2, G.z_dim)
    G.mapping(torch.randn(64, G.z_dim), update_w_avg=True)
    w_full, w_half = G.mapping(z), G.mapping(z, truncation_psi=0.5)
    torch.testing.assert_close(w_half, G.mapping.w_avg + 0.5 * (w_full - G.mapping.w_avg))
    assert torch.allclose(G.mapping(z, truncation_psi=0.0), G.mapping.w_avg.expand(2, -1))


def test_generate_is_seeded_and_device_independent(tmp_path) -> None:
    torch.manual_seed(0)
    G = get_preset("stylegan2-tiny32").build()
    a = G.generate([3, 7], output_type="pt")
    b = G.generate("3,7", output_type="pt")
    c = G.generate([7], output_type="pt")
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a[1:], c, rtol=1e-5, atol=1e-5)  # a seed's image does not depend on its batch
    pils = G.generate("0-3")
    assert len(pils) == 4 and pils[0].size == (32, 32)
    assert image_grid(a).shape == (32, 64, 3)


def test_save_and_load_round_trip(tmp_path) -> None:
    torch.manual_seed(1)
    G = get_preset("stylegan2-tiny32").build()
    G.save_pretrained(tmp_path / "g")
    cfg = json.loads((tmp_path / "g" / "config.json").read_text())
    assert cfg["model_type"] == "stylegan2-generator" and cfg["config"]["resolution"] == 32
    G2 = leangen.load(tmp_path / "g")
    assert isinstance(G2, StyleGAN2Generator) and not G2.training
    torch.testing.assert_close(G.generate([5], output_type="pt"), G2.generate([5], output_type="pt"))
    G3 = StyleGAN2Generator.from_pretrained(tmp_path / "g")
    assert G3.config == G.config


def test_loading_wrong_model_type_is_a_clear_error(tmp_path) -> None:
    D = get_preset("stylegan2-tiny32").build("D")
    D.save_pretrained(tmp_path / "d")
    with pytest.raises(ValueError, match="stylegan2-discriminator"):
        StyleGAN2Generator.from_pretrained(tmp_path / "d")
    assert isinstance(PretrainedModel.from_pretrained(tmp_path / "d"), StyleGAN2Discriminator)
    # weights that do not fit the config
    G = get_preset("stylegan2-tiny32").build()
    G.save_pretrained(tmp_path / "g")
    cfg = json.loads((tmp_path / "g" / "config.json").read_text())
    cfg["config"]["resolution"] = 64
    (tmp_path / "g" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="does not match"):
        leangen.load(tmp_path / "g")
    with pytest.raises(FileNotFoundError):
        leangen.load(tmp_path / "nothing-here")


def test_unknown_preset_suggests_names() -> None:
    with pytest.raises(KeyError, match="stylegan2-256"):
        get_preset("stylegan2-265")
