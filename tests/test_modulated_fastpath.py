"""The modulated-convolution paths agree: ``scaled`` (shared-weight conv, styles on the activations, demodulation on
the output) and ``grouped`` (per-sample weights) for every layer kind, for whole StyleGAN2 / PixelFolder generators
(tiny presets and paper widths) at batch 1 and 4, with gradients; CIPS's pixel-major GEMM path equals the NCHW
modules it is built from; bf16 autocast runs both paths with the demodulation in fp32."""
from __future__ import annotations

import pytest
import torch

from leangen.models.cips import CIPSGenerator
from leangen.ops.modulated import (ModulatedConv2d, StyledConv, ToRGB, demodulation, modulated_fc_weight,
                                   set_modconv_impl)
from leangen.registry import get_preset

TOL = dict(rtol=1e-4, atol=1e-4)  # fp32, the bound

LAYERS = {  # name -> (module factory, input channels, input size)
    "conv3x3": (lambda: StyledConv(8, 6, 3, 16, resolution=8), 8, 8),
    "conv3x3_up": (lambda: StyledConv(8, 6, 3, 16, upsample=True, resolution=16), 8, 8),
    "conv3x3_nodemod": (lambda: ModulatedConv2d(8, 6, 3, 16, demodulate=False), 8, 8),
    "conv1x1": (lambda: StyledConv(8, 6, 1, 16, resolution=8), 8, 8),
    "torgb": (lambda: ToRGB(8, 16, upsample=False), 8, 8),
}


def _call(m: torch.nn.Module, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    if isinstance(m, StyledConv):
        return m(x, w, noise_mode="const")
    return m(x, w)


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("kind", list(LAYERS))
def test_layer_paths_agree_with_gradients(kind: str, batch: int) -> None:
    torch.manual_seed(0)
    make, cin, size = LAYERS[kind]
    m = make()
    for p in m.parameters():  # non-trivial biases / noise strength so every term is checked
        p.data.add_(0.1 * torch.randn_like(p))
    x = torch.randn(batch, cin, size, size, requires_grad=True)
    w = torch.randn(batch, 16, requires_grad=True)
    results = {}
    for impl in ("grouped", "scaled", "auto"):
        set_modconv_impl(m, impl)  # type: ignore[arg-type]
        y = _call(m, x, w)
        grads = torch.autograd.grad(y.square().sum(), [x, w, *m.parameters()])
        results[impl] = (y, grads)
    ref_y, ref_g = results["grouped"]
    for impl in ("scaled", "auto"):
        y, g = results[impl]
        torch.testing.assert_close(y, ref_y, **TOL)
        for a, b in zip(g, ref_g):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-3)


def test_modulated_fc_weight_is_the_grouped_1x1_conv() -> None:
    torch.manual_seed(0)
    conv = ModulatedConv2d(8, 6, 1, 16)
    x, w = torch.randn(3, 8, 5, 7), torch.randn(3, 16)
    ref = conv(x, w, impl="grouped")
    fc = torch.bmm(x.flatten(2).transpose(1, 2), modulated_fc_weight(conv, w))  # [B, HW, out]
    torch.testing.assert_close(fc.transpose(1, 2).reshape_as(ref), ref, **TOL)


def test_auto_picks_grouped_for_batch_1_inference_only(monkeypatch: pytest.MonkeyPatch) -> None:
    conv = ModulatedConv2d(4, 4, 3, 8)
    seen: list[int] = []
    real = ModulatedConv2d._forward_grouped
    monkeypatch.setattr(ModulatedConv2d, "_forward_grouped",
                        lambda self, x, s, wt: seen.append(x.shape[0]) or real(self, x, s, wt))
    with torch.no_grad():
        conv(torch.randn(1, 4, 6, 6), torch.randn(1, 8))
        conv(torch.randn(3, 4, 6, 6), torch.randn(3, 8))
    conv(torch.randn(1, 4, 6, 6), torch.randn(1, 8))  # autograd on: scaled
    assert seen == [1]
    with pytest.raises(ValueError, match="impl"):
        set_modconv_impl(conv, "fused")  # type: ignore[arg-type]


GENERATORS = {
    "stylegan2-tiny32": lambda: get_preset("stylegan2-tiny32").build(),
    "stylegan2-paper16": lambda: get_preset("stylegan2-256").build(resolution=16),  # paper widths (512), small canvas
    "pixelfolder-tiny32": lambda: get_preset("pixelfolder-tiny32").build(),
    "pixelfolder-paper16": lambda: get_preset("pixelfolder-256").build(resolution=16, num_stages=1),
}


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("name", list(GENERATORS))
def test_whole_generators_agree(name: str, batch: int) -> None:
    torch.manual_seed(0)
    G = GENERATORS[name]().eval()
    ws = G.map(torch.randn(batch, G.z_dim)).detach()
    out: dict[str, torch.Tensor] = {}
    for impl in ("grouped", "scaled", "auto"):
        assert set_modconv_impl(G, impl) > 0  # type: ignore[arg-type]
        with torch.no_grad():  # the eager-inference shortcuts (in-place epilogues, cached positional maps)
            out[impl] = G.synthesis(ws, noise_mode="const")
    torch.testing.assert_close(out["scaled"], out["grouped"], **TOL)
    torch.testing.assert_close(out["auto"], out["grouped"], **TOL)
    # with autograd (the trainer's path): values and parameter gradients
    grads = {}
    for impl in ("grouped", "scaled"):
        set_modconv_impl(G, impl)  # type: ignore[arg-type]
        y = G.synthesis(ws, noise_mode="const")
        torch.testing.assert_close(y, out["grouped"], **TOL)
        params = [p for n, p in G.named_parameters() if not n.startswith("mapping")]
        grads[impl] = torch.autograd.grad(y.square().mean(), params, allow_unused=True)
    # One relative norm over all parameter gradients (a scalar noise strength's gradient is a sum over every pixel
    # and channel that cancels to near zero). 1e-3: at paper widths oneDNN's backward of the per-sample-weight conv is
    # itself ~2.4e-4 off an fp64 reference, the scaled path ~1e-6 (measured), so the bound is the grouped path's.
    ga = torch.cat([g.flatten() for g in grads["scaled"] if g is not None])
    gb = torch.cat([g.flatten() for g in grads["grouped"] if g is not None])
    assert ga.shape == gb.shape and gb.norm() > 0
    assert (ga - gb).norm() <= 1e-3 * gb.norm()


def _cips_reference(G: CIPSGenerator, w: torch.Tensor) -> torch.Tensor:
    """CIPS through its NCHW modules (grouped 1x1 modulated convs, NoiseInjection, FusedLeakyReLU, ToRGB)."""
    r = G.img_resolution
    feats = G._grid_features(r, r)  # [1, N, C]
    x = feats.transpose(1, 2).reshape(1, -1, r, r).expand(w.shape[0], -1, -1, -1)
    set_modconv_impl(G, "grouped")
    x = G.conv1(x, w, "const")
    rgb = None
    for i, to_rgb in enumerate(G.to_rgbs):
        x = G.linears[2 * i + 1](G.linears[2 * i](x, w, "const"), w, "const")
        rgb = to_rgb(x, w, rgb)
    assert rgb is not None
    return rgb


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("widths", ["tiny", "paper"])
def test_cips_pixel_major_path_equals_modules(widths: str, batch: int, grad: bool) -> None:
    torch.manual_seed(0)
    if widths == "tiny":
        G = get_preset("cips-tiny32").build().eval()
    else:  # paper widths and hidden size at an 8x8 canvas
        G = get_preset("cips-256").build(resolution=8).eval()
    for m in G.modules():  # noise strength is zero at init: make the noise term count
        if hasattr(m, "noise_const"):
            m.weight.data.fill_(0.3)
    w = G.map(torch.randn(batch, G.z_dim))[:, 0].detach()
    with torch.set_grad_enabled(grad):
        fast = G.synthesis(w[:, None], noise_mode="const")
        ref = _cips_reference(G, w)
    torch.testing.assert_close(fast, ref, **TOL)


@pytest.mark.parametrize("impl", ["grouped", "scaled"])
def test_bf16_autocast_runs_both_paths_with_fp32_demodulation(impl: str) -> None:
    torch.manual_seed(0)
    G = get_preset("stylegan2-tiny32").build()
    set_modconv_impl(G, impl)  # type: ignore[arg-type]
    ws = G.map(torch.randn(4, G.z_dim)).detach()
    ref = G.synthesis(ws, noise_mode="const").detach()
    dtypes: list[torch.dtype] = []
    for m in G.modules():
        if isinstance(m, ModulatedConv2d):
            m.register_forward_hook(lambda _m, _i, out: dtypes.append(out.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = G.synthesis(ws, noise_mode="const")
        y.float().square().mean().backward()  # backward through autocast works too
        conv = G.conv1.conv
        d = demodulation(conv.modulation(ws[:, 0]), conv.weight[0] * conv.scale)
    assert d.dtype == torch.float32
    assert dtypes and set(dtypes) == {torch.bfloat16}  # every modulated conv computed in bf16
    assert torch.isfinite(y).all()
    # bf16 has 8 mantissa bits: a few percent of the image's range
    assert (y.float() - ref).abs().max() < 0.05 * ref.abs().max() + 0.02
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in G.convs.parameters())
