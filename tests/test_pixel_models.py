"""Pixel folding, coordinate features, CIPS and PixelFolder generators (shapes, exact counts, fast paths, save/load)."""
from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import leangen
from leangen.models.cips import CIPSGenerator
from leangen.models.pixelfolder import PixelFolderGenerator
from leangen.ops.coords import LearnedFourierFeatures, constant_cache, coordinate_grid
from leangen.ops.fold import fold2x, fold_permutation, unfold2x, unfold_permutation
from leangen.registry import get_preset


def _with_noise(G: torch.nn.Module, value: float = 0.3) -> torch.nn.Module:
    """Noise strengths start at 0; make them non-zero so that noise paths are actually tested."""
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise.weight"):
                p.fill_(value)
    return G


# ---------------------------------------------------------------------------------------------------------- folding

def test_fold_unfold_are_exact_inverses_on_random_shapes() -> None:
    rng = random.Random(0)
    for _ in range(60):
        b, c, h, w = rng.randint(1, 3), rng.randint(1, 9), 2 * rng.randint(1, 8), 2 * rng.randint(1, 8)
        x = torch.randn(b, c, h, w)
        y = fold2x(x)
        assert y.shape == (b, 4 * c, h // 2, w // 2)
        assert torch.equal(unfold2x(y), x)
        z = torch.randn(b, 4 * c, h // 2, w // 2)
        assert torch.equal(fold2x(unfold2x(z)), z)
        # channels-last inputs give the same values (and keep their memory format)
        xc = x.contiguous(memory_format=torch.channels_last)
        assert torch.equal(fold2x(xc), y)
        assert torch.equal(unfold2x(fold2x(xc)), x)


def test_fold_channel_order_and_pixel_unshuffle_permutation() -> None:
    b, c, h, w = 2, 3, 4, 6
    x = torch.randn(b, c, h, w)
    y = fold2x(x)
    for ph in range(2):
        for pw in range(2):
            for ch in range(c):
                # documented order: out channel (ph * 2 + pw) * C + c holds x[c, 2i + ph, 2j + pw]
                assert torch.equal(y[:, (ph * 2 + pw) * c + ch], x[:, ch, ph::2, pw::2])
    perm = fold_permutation(c)
    assert torch.equal(y, F.pixel_unshuffle(x, 2)[:, perm])
    assert not torch.equal(perm, torch.arange(4 * c))  # really a different order from pixel_unshuffle's
    assert not torch.equal(y, F.pixel_unshuffle(x, 2))
    assert torch.equal(unfold2x(y), F.pixel_shuffle(y[:, unfold_permutation(c)], 2))


def test_fold_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="even"):
        fold2x(torch.randn(1, 2, 5, 4))
    with pytest.raises(ValueError, match="divisible by 4"):
        unfold2x(torch.randn(1, 6, 4, 4))
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        fold2x(torch.randn(2, 4, 4))


# ------------------------------------------------------------------------------------------------------ coordinates

def test_coordinate_grid_non_square() -> None:
    g = coordinate_grid(3, 5, batch=2)
    assert g.shape == (2, 2, 3, 5)
    torch.testing.assert_close(g[0, 0, 1], torch.linspace(-1, 1, 5))  # x varies along the width
    torch.testing.assert_close(g[0, 1, :, 2], torch.linspace(-1, 1, 3))  # y along the height
    assert g[1, 0, 0, 0] == -1 and g[1, 1, -1, -1] == 1


def test_learned_fourier_features() -> None:
    torch.manual_seed(0)
    lff = LearnedFourierFeatures(16)
    assert lff.weight.abs().max() <= (9 / 2) ** 0.5  # SIREN first-layer init U(+-sqrt(9 / in))
    grid = coordinate_grid(4, 6, batch=2)
    out = lff(grid)
    assert out.shape == (2, 16, 4, 6) and out.abs().max() <= 1
    points = grid.reshape(2, 2, 24, 1)  # a list of points works the same
    torch.testing.assert_close(lff(points).reshape(2, 16, 4, 6), out)


# ---------------------------------------------------------------------------------------------------- exact counts

def test_paper_parameter_and_mac_counts() -> None:
    expected = {"cips-256": (44_317_092, 222.92), "pixelfolder-256": (20_843_614, 23.75),
                "cips-512": (145_124_329, None), "pixelfolder-512": (17_478_430, None),
                "pixelfolder-1024": (21_141_096, 40.94), "cips-1024": (547_846_414, None)}
    for name, (params, gmacs) in expected.items():
        with torch.device("meta"):
            G = get_preset(name).build()
            assert G.num_params() == params, name
            if gmacs is not None:  # every layer is executed with autograd on (no caches): the architecture's MACs
                with FlopCounterMode(display=False) as counter:
                    G(torch.randn(1, G.z_dim))
                assert counter.get_total_flops() / 2e9 == pytest.approx(gmacs, abs=0.01), name
    with torch.device("meta"):
        pf = PixelFolderGenerator(256)
        assert pf.num_ws == 13 and pf.stage_resolutions == [16, 64, 256]
        # the unused stage-0 merge layer is kept (official layout): 1024 -> 512 1x1 conv + bias
        assert sum(p.numel() for p in pf.posfolders[0].conv_merge.parameters()) == 524_800
        assert PixelFolderGenerator(1024).stage_resolutions == [16, 64, 256, 1024]
        assert CIPSGenerator(256).num_ws == 1


# -------------------------------------------------------------------------------------------------------------- CIPS

def _cips_reference(G: CIPSGenerator, ws: torch.Tensor, noise_mode: str) -> torch.Tensor:
    """CIPS-skip written with the NCHW modules (ModulatedConv2d's conv path): what the fast path must reproduce."""
    w, b, r = ws[:, 0], ws.shape[0], G.img_resolution
    x = torch.cat([G.lff(coordinate_grid(r, r, b)), G.emb(b)], 1)
    x = G.conv1(x, w, noise_mode)
    rgb = 0
    for i, to_rgb in enumerate(G.to_rgbs):
        x = G.linears[2 * i + 1](G.linears[2 * i](x, w, noise_mode), w, noise_mode)
        rgb = to_rgb(x, w, rgb)
    return rgb


@pytest.mark.parametrize("noise_mode", ["none", "const", "random"])
def test_cips_matmul_path_matches_modulated_conv(noise_mode: str) -> None:
    torch.manual_seed(0)
    G = _with_noise(get_preset("cips-tiny32").build())
    ws = G.map(torch.randn(2, G.z_dim)).detach()
    torch.manual_seed(1)
    ref = _cips_reference(G, ws, noise_mode)
    torch.manual_seed(1)
    train_path = G.synthesis(ws, noise_mode)
    with torch.inference_mode():
        torch.manual_seed(1)
        fast = G.synthesis(ws, noise_mode)
        torch.manual_seed(1)
        fast_cached = G.synthesis(ws, noise_mode)
    for out in (train_path, fast, fast_cached):
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_cips_crop_coords_and_other_sizes() -> None:
    torch.manual_seed(0)
    G = get_preset("cips-tiny32").build().eval()
    ws = G.map(torch.randn(2, G.z_dim))
    with torch.no_grad():
        full = G.synthesis(ws, "none")
        assert full.shape == (2, 3, 32, 32)
        crop = coordinate_grid(32, 32)[:, :, 5:17, 9:30]  # shared by the batch
        torch.testing.assert_close(G.synthesis(ws, "none", coords=crop), full[:, :, 5:17, 9:30], rtol=1e-4, atol=1e-4)
        per_sample = coordinate_grid(32, 32, batch=2)[:, :, 20:, :8]
        torch.testing.assert_close(G.synthesis(ws, "none", coords=per_sample), full[:, :, 20:, :8],
                                   rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(G.synthesis(ws, "none", size=32), full)
        big = G.synthesis(ws, "const", size=(48, 80))  # const noise only exists at the native grid: none added
        assert big.shape == (2, 3, 48, 80) and torch.isfinite(big).all()
        # the corners of any full grid hit the corners of the embedding: same pixels as the native image
        torch.testing.assert_close(big[:, :, 0, 0], full[:, :, 0, 0], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(big[:, :, -1, -1], full[:, :, -1, -1], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="coords or size"):
        G.synthesis(ws, coords=crop, size=8)


# ------------------------------------------------------------------------------------------------------- PixelFolder

@pytest.mark.parametrize("batch", [1, 2])
def test_pixelfolder_fast_path_matches_training_path(batch: int) -> None:
    torch.manual_seed(0)
    G = _with_noise(get_preset("pixelfolder-tiny32").build())
    ws = G.map(torch.randn(batch, G.z_dim)).detach()
    for noise_mode in ("none", "const", "random"):
        torch.manual_seed(3)
        ref = G.synthesis(ws, noise_mode)
        with torch.inference_mode():
            for _ in range(2):  # second call uses the cached positional maps
                torch.manual_seed(3)
                torch.testing.assert_close(G.synthesis(ws, noise_mode), ref, rtol=1e-4, atol=1e-4)


def test_pixelfolder_stages() -> None:
    G = get_preset("pixelfolder-tiny64").build()
    assert G.stage_resolutions == [16, 64] and G.num_ws == 9
    img, stages = G.synthesis(G.map(torch.randn(2, G.z_dim)), "const", return_stages=True)
    assert img.shape == (2, 3, 64, 64) and [s.shape[-1] for s in stages] == [16, 64]
    assert torch.equal(stages[-1], img)
    # the official formula gives one stage at 32; the tiny preset asks for two (8 -> 32)
    assert PixelFolderGenerator(32, channel_base=64, max_channels=64).num_stages == 1
    assert get_preset("pixelfolder-tiny32").build().stage_resolutions == [8, 32]
    with pytest.raises(ValueError, match="stages do not fit"):
        PixelFolderGenerator(32, num_stages=3)


def test_cached_positional_maps_follow_parameter_updates() -> None:
    torch.manual_seed(0)
    G = get_preset("pixelfolder-tiny32").build().eval()
    ws = G.map(torch.randn(1, G.z_dim))
    with torch.no_grad():
        before = G.synthesis(ws, "const")
        G.lffs[0].weight.mul_(1.5)  # an optimizer step / load_state_dict changes the parameter in place
        G.input.input.add_(0.1)
        after = G.synthesis(ws, "const")
        with constant_cache(False):
            uncached = G.synthesis(ws, "const")
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, uncached)
    assert not any("cache" in k for k in G.state_dict())


# --------------------------------------------------------------------------------------------------- tiny presets

@pytest.mark.parametrize("name", ["cips-tiny32", "pixelfolder-tiny32", "pixelfolder-tiny64"])
def test_tiny_presets_forward_backward(name: str) -> None:
    preset = get_preset(name)
    G, D = preset.build("G"), preset.build("D")
    assert 100_000 < G.num_params() < 1_000_000
    assert preset.training["diffaugment"] == "color,translation" and preset.training["r1_interval"] == 16
    img = G(torch.randn(3, G.z_dim))
    assert img.shape == (3, 3, preset.resolution, preset.resolution) and torch.isfinite(img).all()
    D(img).sum().backward()
    missing = [n for n, p in G.named_parameters() if p.grad is None]
    # only the stage-0 merge layer (unused, kept for the official layout) gets no gradient
    assert all(".0.conv_merge." in n for n in missing), missing


@pytest.mark.parametrize("name", ["cips-tiny32", "pixelfolder-tiny32"])
def test_save_and_load_round_trip(name: str, tmp_path) -> None:
    torch.manual_seed(2)
    G = get_preset(name).build()
    with torch.inference_mode():
        G.generate([1])  # fill the caches: they must not end up in the saved state
    G.save_pretrained(tmp_path / "g")
    G2 = leangen.load(tmp_path / "g")
    assert type(G2) is type(G) and G2.config == G.config
    for (k, a), (k2, b) in zip(G.state_dict().items(), G2.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    torch.testing.assert_close(G.generate([5, 6], output_type="pt"), G2.generate([5, 6], output_type="pt"))


def test_copies_do_not_carry_the_cache() -> None:
    import copy
    import pickle

    G = get_preset("cips-tiny32").build().eval()
    with torch.inference_mode():
        G.generate([0])
    assert len(G.__dict__["_constant_cache"]) == 1
    for clone in (copy.deepcopy(G), pickle.loads(pickle.dumps(G))):
        assert len(clone.__dict__["_constant_cache"]) == 0
        torch.testing.assert_close(clone.generate([0], output_type="pt"), G.generate([0], output_type="pt"))


@pytest.mark.parametrize("name", ["cips-tiny32", "pixelfolder-tiny32"])
def test_caches_work_across_inference_no_grad_and_autograd(name: str) -> None:
    G = get_preset(name).build().eval()
    z = torch.randn(2, G.z_dim)
    with torch.inference_mode():  # fills the caches with inference tensors
        a = G(z, noise_mode="const")
    with torch.no_grad():
        b = G(z, noise_mode="const")
    c = G(z, noise_mode="const")  # autograd on: recomputed, differentiable
    c.mean().backward()
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c.detach(), rtol=1e-4, atol=1e-4)
