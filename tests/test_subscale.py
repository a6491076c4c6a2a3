"""Subscale slicing and bit-depth splitting are exact (property tests over every S dividing N)."""
from __future__ import annotations

import pytest
import torch

from leangen.ops.subscale import join_bits, merge_slices, slice_offsets, split_bits, subscale_slices


@pytest.mark.parametrize("n", [1, 4, 6, 12, 16, 32])
def test_slices_are_the_strided_subimages_in_raster_order_and_merge_inverts(n: int) -> None:
    g = torch.Generator().manual_seed(n)
    for s in [d for d in range(1, n + 1) if n % d == 0]:
        for dtype in (torch.uint8, torch.int64, torch.float32):
            x = (torch.randint(0, 256, (2, 3, n, n), generator=g)).to(dtype)
            sl = subscale_slices(x, s)
            assert sl.shape == (2, s * s, 3, n // s, n // s) and sl.dtype == dtype
            for t, (i, j) in enumerate(slice_offsets(s)):
                assert t == i * s + j
                assert torch.equal(sl[:, t], x[..., i::s, j::s])
            assert torch.equal(merge_slices(sl, s), x)
            y = torch.randint(0, 256, sl.shape, generator=g).to(dtype)
            assert torch.equal(subscale_slices(merge_slices(y, s), s), y)


def test_slicing_rejects_factors_that_do_not_divide() -> None:
    with pytest.raises(ValueError, match="must divide"):
        subscale_slices(torch.zeros(1, 3, 12, 12), 5)
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        subscale_slices(torch.zeros(3, 12, 12), 2)
    with pytest.raises(ValueError, match="slices"):
        merge_slices(torch.zeros(1, 3, 3, 4, 4), 2)


@pytest.mark.parametrize("bits", [8, 5, 3])
def test_bit_split_and_join_are_exact_for_every_value(bits: int) -> None:
    values = torch.arange(2 ** bits, dtype=torch.uint8).view(1, 1, 1, -1)
    for high in range(bits + 1):
        hi, lo = split_bits(values, high, bits)
        assert int(hi.max()) == 2 ** high - 1 if high else int(hi.max()) == 0
        assert int(lo.max()) < 2 ** (bits - high)
        assert torch.equal(hi.long() * 2 ** (bits - high) + lo.long(), values.long())
        assert torch.equal(join_bits(hi, lo, bits - high), values)
    # the 3 most significant bits of 8 are what the likelihood trainer feeds a 3-bit model (x >> 5)
    x = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(split_bits(x, 3)[0], x >> 5) and torch.equal(split_bits(x, 3)[1], x & 31)
    with pytest.raises(ValueError):
        split_bits(x, 9)
