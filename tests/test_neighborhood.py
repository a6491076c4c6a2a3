"""Neighborhood attention: NATTEN's window semantics, every backend against the dense reference (forward and
backward in q, k, v and the bias table), Hydra head groups, and clear errors."""
from __future__ import annotations

import random

import pytest
import torch

from leangen.ops.neighborhood import (HydraNeighborhoodAttention2d, NeighborhoodAttention2d, RelPosSelfAttention2d,
                                      hydra_head_split, neighborhood_attention2d, pair, relative_bias_dense,
                                      window_index)


def _keys_bruteforce(length: int, k: int, d: int) -> list[list[int]]:
    """Each query's keys from the centre-clamped formulation (independent of ``window_index``'s start formula):
    centre c = clamp(i // d, r, L_g - 1 - r) in group coordinates; keys j with j = i (mod d), |j // d - c| <= r."""
    r, out = k // 2, []
    for i in range(length):
        g = i % d
        group_len = len(range(g, length, d))
        c = min(max(i // d, r), group_len - 1 - r)
        out.append([j for j in range(length) if j % d == g and abs(j // d - c) <= r])
    return out


def test_window_index_matches_natten_semantics() -> None:
    for length in range(1, 40):
        for k in (1, 3, 5, 7, 9):
            for d in range(1, 6):
                if k * d > length:
                    continue
                keys, bias = window_index(length, k, d)
                want = _keys_bruteforce(length, k, d)
                assert keys.tolist() == want, (length, k, d)
                i = torch.arange(length)[:, None]
                assert torch.equal(bias, (keys - i) // d + k - 1)  # offsets are multiples of d
                assert int(bias.min()) >= 0 and int(bias.max()) <= 2 * k - 2
    # interior queries are centred; border windows are shifted, not padded
    keys, _ = window_index(20, 5, 1)
    assert keys[10].tolist() == [8, 9, 10, 11, 12]
    assert keys[0].tolist() == [0, 1, 2, 3, 4] and keys[19].tolist() == [15, 16, 17, 18, 19]
    keys, _ = window_index(16, 3, 4)
    assert keys[1].tolist() == [1, 5, 9] and keys[13].tolist() == [5, 9, 13]


def _case(rng: random.Random) -> tuple[int, int, tuple[int, int], tuple[int, int]]:
    while True:
        kernel = (rng.choice([1, 3, 5, 7]), rng.choice([1, 3, 5, 7]))
        dil = (rng.randint(1, 3), rng.randint(1, 3))
        h = rng.randint(kernel[0] * dil[0], kernel[0] * dil[0] + 6)
        w = rng.randint(kernel[1] * dil[1], kernel[1] * dil[1] + 6)
        if h * w <= 400:
            return h, w, kernel, dil


def _grads(backend: str, q, k, v, kernel, dil, rpb, scale=None):
    out = neighborhood_attention2d(q, k, v, kernel, dil, rpb, scale=scale, backend=backend)
    weight = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    inputs = [t for t in (q, k, v, rpb) if t is not None]
    return out, torch.autograd.grad((out * weight).sum() + out.square().sum(), inputs)


@pytest.mark.parametrize("backend", ["gather", "tiled"])
@pytest.mark.parametrize("seed", range(4))
def test_backend_equals_reference_forward_and_backward(seed: int, backend: str) -> None:
    rng = random.Random(seed)
    torch.manual_seed(seed)
    for _ in range(5):
        h, w, kernel, dil = _case(rng)
        b, heads, dim = rng.randint(1, 2), rng.randint(1, 3), rng.choice([4, 8])
        q, k, v = (torch.randn(b, heads, h, w, dim, dtype=torch.float64, requires_grad=True) for _ in range(3))
        rpb = torch.randn(heads, 2 * kernel[0] - 1, 2 * kernel[1] - 1, dtype=torch.float64, requires_grad=True)
        use_rpb = rng.random() < 0.8
        ref, ref_g = _grads("reference", q, k, v, kernel, dil, rpb if use_rpb else None)
        out, g = _grads(backend, q, k, v, kernel, dil, rpb if use_rpb else None)
        torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
        for a, bb in zip(g, ref_g):
            torch.testing.assert_close(a, bb, rtol=1e-9, atol=1e-9)
        if use_rpb and kernel != (1, 1):  # (one key per query: softmax is constant, the bias has no gradient)
            assert ref_g[3].abs().sum() > 0  # the bias table really gets a gradient


def test_tiles_cross_borders_and_gradients_are_deterministic() -> None:
    """Several tiles per axis (clamped last tile, shifted border windows), dilation by sub-grids, and gradients that
    are bit-identical between two runs (bit-exact training resume depends on it)."""
    torch.manual_seed(0)
    for h, w, kernel, dil in [(30, 21, (5, 7), 1), (27, 20, 3, (3, 2)), (19, 17, 7, (2, 1))]:
        q, k, v = (torch.randn(1, 2, h, w, 8, dtype=torch.float64, requires_grad=True) for _ in range(3))
        kh, kw = pair(kernel)
        rpb = torch.randn(2, 2 * kh - 1, 2 * kw - 1, dtype=torch.float64, requires_grad=True)
        ref, ref_g = _grads("reference", q, k, v, kernel, dil, rpb)
        for backend in ("tiled", "gather"):
            out, g = _grads(backend, q, k, v, kernel, dil, rpb)
            _, g2 = _grads(backend, q, k, v, kernel, dil, rpb)
            torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
            for a, b, c in zip(g, g2, ref_g):
                assert torch.equal(a, b)
                torch.testing.assert_close(a, c, rtol=1e-9, atol=1e-9)


def test_inference_mode_first_then_autograd() -> None:
    """Cached index tables made under inference mode must still be usable by a later training step."""
    q, k, v = (torch.randn(1, 2, 20, 20, 8, requires_grad=True) for _ in range(3))
    with torch.inference_mode():
        neighborhood_attention2d(q, k, v, 5, backend="tiled")
    neighborhood_attention2d(q, k, v, 5, backend="tiled").sum().backward()
    assert q.grad is not None


def test_gather_chunks_give_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, 10, 9, 8) for _ in range(3))
    rpb = torch.randn(2, 5, 5)
    whole = neighborhood_attention2d(q, k, v, 3, (2, 3), rpb, backend="gather")
    monkeypatch.setattr("leangen.ops.neighborhood.GATHER_CHUNK_ELEMENTS", 2 * 2 * 9 * 8 * 7)  # 7 queries a chunk
    torch.testing.assert_close(neighborhood_attention2d(q, k, v, 3, (2, 3), rpb, backend="gather"), whole)


def test_flex_equals_reference_forward() -> None:
    """On CPU flex_attention has no backward and runs eagerly: forward only, small sizes (divisible by the dilation,
    regrouped into sub-grids, and not divisible, with the dilation in the mask)."""
    torch.manual_seed(0)
    for h, w, kernel, dil in [(8, 8, 7, 1), (16, 12, (7, 5), 2), (9, 11, (3, 5), (2, 1)), (12, 10, 3, (3, 2))]:
        q, k, v = (torch.randn(2, 3, h, w, 16) for _ in range(3))
        kh, kw = pair(kernel)
        rpb = torch.randn(3, 2 * kh - 1, 2 * kw - 1)
        ref = neighborhood_attention2d(q, k, v, kernel, dil, rpb, backend="reference")
        torch.testing.assert_close(neighborhood_attention2d(q, k, v, kernel, dil, rpb, backend="flex"), ref,
                                   rtol=1e-5, atol=1e-5)


def test_scale_default_and_explicit() -> None:
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 6, 6, 16) for _ in range(3))
    a = neighborhood_attention2d(q, k, v, 3, backend="gather")
    b = neighborhood_attention2d(q * 16 ** -0.5, k, v, 3, scale=1.0, backend="gather")
    torch.testing.assert_close(a, b)
    c = neighborhood_attention2d(q, k, v, 3, scale=0.3, backend="reference")
    torch.testing.assert_close(neighborhood_attention2d(q, k, v, 3, scale=0.3, backend="gather"), c)
    assert not torch.allclose(a, c)


def test_full_window_equals_full_attention_and_auto_backend() -> None:
    """k = size, d = 1: every query sees every key, so NA is plain softmax attention (bias 0)."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, 5, 7, 8) for _ in range(3))
    full = torch.nn.functional.scaled_dot_product_attention(*(t.reshape(2, 2, 35, 8) for t in (q, k, v)))
    for backend in ("reference", "gather", "tiled", "auto"):
        out = neighborhood_attention2d(q, k, v, (5, 7), backend=backend)  # type: ignore[arg-type]
        torch.testing.assert_close(out.reshape(2, 2, 35, 8), full, rtol=1e-5, atol=1e-5)


def test_errors_are_clear() -> None:
    q = torch.randn(1, 2, 8, 8, 4)
    with pytest.raises(ValueError, match=r"7 \* 2 = 14 exceeds the input height 8"):
        neighborhood_attention2d(q, q, q, 7, 2)
    with pytest.raises(ValueError, match="exceeds the input width 6"):
        neighborhood_attention2d(torch.randn(1, 2, 8, 6, 4), *[torch.randn(1, 2, 8, 6, 4)] * 2, 7)
    with pytest.raises(ValueError, match="odd kernel"):
        neighborhood_attention2d(q, q, q, 4)
    with pytest.raises(ValueError, match="rpb must be"):
        neighborhood_attention2d(q, q, q, 3, rpb=torch.zeros(2, 3, 3))
    with pytest.raises(ValueError, match="unknown neighborhood attention backend"):
        neighborhood_attention2d(q, q, q, 3, backend="natten")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\[B, heads, H, W, head_dim\]"):
        neighborhood_attention2d(q[0], q[0], q[0], 3)


def test_hydra_groups_have_their_own_kernel_dilation_and_bias() -> None:
    assert hydra_head_split(16, 2) == [8, 8] and hydra_head_split(5, 2) == [2, 3] and hydra_head_split(7, 3) == [2, 2, 3]
    torch.manual_seed(0)
    hydra = HydraNeighborhoodAttention2d(48, 6, kernel_sizes=[3, 5], dilations=[1, 2], backend="gather")
    assert [tuple(t.shape) for t in hydra.rpb] == [(3, 5, 5), (3, 9, 9)]
    x = torch.randn(2, 10, 12, 48)
    out = hydra(x)
    # the same thing written with one NA call per group
    q, k, v = hydra.qkv(x).reshape(2, 10, 12, 3, 6, 8).permute(3, 0, 4, 1, 2, 5)
    parts = [neighborhood_attention2d(q[:, :3], k[:, :3], v[:, :3], 3, 1, hydra.rpb[0], backend="reference"),
             neighborhood_attention2d(q[:, 3:], k[:, 3:], v[:, 3:], 5, 2, hydra.rpb[1], backend="reference")]
    want = hydra.proj(torch.cat(parts, 1).permute(0, 2, 3, 1, 4).reshape(2, 10, 12, 48))
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)
    out.square().mean().backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in hydra.rpb)
    single = NeighborhoodAttention2d(48, 6, 3, 1, backend="gather")
    assert single(x).shape == x.shape


def test_full_attention_bias_uses_key_minus_query() -> None:
    rpb = torch.arange(2 * 7 * 7, dtype=torch.float32).reshape(2, 7, 7)
    dense = relative_bias_dense(rpb, 4, 4)
    # query (1, 2) -> key (3, 0): offset (+2, -2) -> table index (2 + 3, -2 + 3)
    assert dense[1, 1 * 4 + 2, 3 * 4 + 0] == rpb[1, 5, 1]
    # with k = size and no dilation, NA's bias indices reduce to the same table
    torch.manual_seed(0)
    attn = RelPosSelfAttention2d(32, 2, 4)
    x = torch.randn(2, 4, 4, 32)
    q, k, v = attn.qkv(x).reshape(2, 4, 4, 3, 2, 16).permute(3, 0, 4, 1, 2, 5)
    # NA with an odd 7-wide window is impossible on 4 pixels; the dense reference with the 7x7 table matches instead
    logits = (q.reshape(2, 2, 16, 16) * 16 ** -0.5) @ k.reshape(2, 2, 16, 16).transpose(-1, -2)
    ref = torch.softmax(logits + relative_bias_dense(attn.rpb, 4, 4), -1) @ v.reshape(2, 2, 16, 16)
    want = attn.proj(ref.reshape(2, 2, 4, 4, 16).permute(0, 2, 3, 1, 4).reshape(2, 4, 4, 32))
    torch.testing.assert_close(attn(x), want, rtol=1e-5, atol=1e-5)
