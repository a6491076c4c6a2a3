"""StyleNAT-256 forward at batch 1 and 32 in bf16 autocast with its default attention backend (CUDA only).

On CUDA ``auto`` is flex attention compiled per shape; StyleNAT-256 has 11 attention shapes. This once hit dynamo's
recompile limit, ran flex eagerly and asked for 32 GiB at batch 1. The test fails if any layer falls back to
``tiled`` (the fallback warns), if nothing was compiled, or if the memory peak is far above what the model needs.
"""
from __future__ import annotations

import warnings
from typing import Iterator

import pytest
import torch

pytestmark = pytest.mark.cuda

#: Peak CUDA memory allowed per forward, in GiB: far above the model's needs, far below eager flex's N^2 scores.
PEAK_GIB = {1: 8, 32: 64}


@pytest.fixture(scope="module")
def stylenat256(device: torch.device) -> Iterator[torch.nn.Module]:
    if device.type != "cuda":
        pytest.skip("stylenat-256 at batch 32 is a GPU-sized forward; the CPU dry run skips it")
    import leangen
    from leangen.execution import ExecutionPolicy

    ExecutionPolicy.create(device, precision="bf16").activate()
    yield leangen.load("stylenat-256", device=device).eval()
    ExecutionPolicy.create(device).activate()


@pytest.mark.parametrize("batch", [1, 32])
def test_stylenat256_forward_in_bf16_with_the_default_backend(batch: int, stylenat256: torch.nn.Module,
                                                               device: torch.device) -> None:
    from leangen.execution import current_policy
    from leangen.ops.neighborhood_flex import compiled_shapes

    policy = current_policy()
    assert policy.precision == "bf16" and policy.device == device
    z = torch.randn(batch, stylenat256.z_dim, generator=torch.Generator().manual_seed(0)).to(device)
    torch.cuda.reset_peak_memory_stats(device)
    with warnings.catch_warnings(record=True) as caught, torch.no_grad(), policy.autocast():
        warnings.simplefilter("always")
        img = stylenat256(z, noise_mode="const")
        torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) / 2 ** 30
    fallbacks = [str(w.message) for w in caught if "tiled backend instead" in str(w.message)]
    assert not fallbacks, fallbacks
    assert compiled_shapes() > 0, "the default backend on CUDA should be compiled flex attention"
    assert img.shape == (batch, 3, 256, 256) and torch.isfinite(img.float()).all()
    assert img.float().std() > 0.01  # not a constant image
    assert peak < PEAK_GIB[batch], f"peak {peak:.1f} GiB at batch {batch}"
    print(f"stylenat-256 bf16 batch {batch}: peak {peak:.2f} GiB, {compiled_shapes()} compiled flex shapes")
