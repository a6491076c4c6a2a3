"""The fixed-shape sampling step (``leangen.ops.masked_static``, the one a CUDA graph captures) draws exactly what the
cached sampler draws under the same seed, for SPN (categorical and logistic-mixture heads, a depth stage) and the AR
baseline; and its step holds no Python integer position (one step function serves every pixel)."""
from __future__ import annotations

import pytest
import torch

from leangen.ops.masked_static import StaticSampler
from leangen.registry import get_preset

CASES = {  # preset -> constructor overrides (small canvases keep the per-pixel loops short)
    "spn-tiny-32": {"resolution": 16},
    "spn-tiny-32-logistic": {"resolution": 8},
    "ar-tiny-32": {"resolution": 8},
    "ar-tiny-32-5bit": {"resolution": 8},
}


def _model(preset: str, **overrides: object) -> torch.nn.Module:
    torch.manual_seed(0)
    m = get_preset(preset).build("model", **overrides).eval()
    with torch.no_grad():  # untrained heads are zero: perturb so that draws depend on every layer
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("preset", list(CASES))
def test_static_draws_equal_cached_draws(preset: str, temperature: float) -> None:
    m = _model(preset, **CASES[preset])
    cached = m.sample(2, torch.Generator().manual_seed(3), temperature=temperature, cached=True)
    static = m.sample(2, torch.Generator().manual_seed(3), temperature=temperature, static=True)
    assert cached.dtype == static.dtype == torch.uint8
    assert cached.float().std() > 0  # not a constant image: the comparison means something
    assert torch.equal(static, cached)


def test_spn_depth_stage_with_prefix() -> None:
    m = _model("spn-tiny-32-depth", resolution=8)
    prefix = torch.randint(0, 2 ** m.high_bits, (2, m.img_channels, 8, 8))
    a = m.sample(2, torch.Generator().manual_seed(1), prefix=prefix)
    b = m.sample(2, torch.Generator().manual_seed(1), prefix=prefix, static=True)
    assert torch.equal(a, b)


def test_one_step_function_serves_every_pixel_and_is_reusable() -> None:
    """The sampler advances its own device-side position; a second call (new uniforms) restarts cleanly."""
    m = _model("ar-tiny-32", resolution=8)
    dec = m.decoder
    s = StaticSampler(dec, 1, 8, 8)
    assert s.t.item() == 0
    u1, u2 = (torch.rand(1, 8, 8, dec.channels, generator=torch.Generator().manual_seed(k), dtype=torch.float64)
              for k in (0, 1))
    ref1 = dec.sample(1, 8, 8, u1, cached=True)
    ref2 = dec.sample(1, 8, 8, u2, cached=True)
    assert torch.equal(s.sample(u1), ref1)
    assert s.t.item() == 64
    assert torch.equal(s.sample(u2), ref2)
    with pytest.raises(ValueError, match="CUDA"):
        StaticSampler(dec, 1, 8, 8, graph=True)
