"""Autoregressive sampling on the tier's device: SPN and the AR baseline draw the same image with their cache as
without it, under ``--deterministic`` (on CUDA the cached path once drew other images than the naive one)."""
from __future__ import annotations

from typing import Iterator

import pytest
import torch

pytestmark = pytest.mark.cuda


@pytest.fixture
def deterministic(device: torch.device) -> Iterator[None]:
    """The policy of ``--deterministic`` on the tier's device, for one test; the default policy afterwards."""
    from leangen.execution import ExecutionPolicy

    ExecutionPolicy.create(device, deterministic=True).activate()
    try:
        yield
    finally:
        ExecutionPolicy.create(device).activate()  # deterministic algorithms off again for the next tests


@pytest.mark.parametrize("preset", ["spn-tiny-32", "ar-tiny-32"])
def test_cached_sampling_draws_what_naive_sampling_draws(preset: str, device: torch.device,
                                                         deterministic: None) -> None:
    from leangen.models.base import MODEL_TYPES
    from leangen.registry import get_preset

    # The preset as it is on the GPU; at 16x16 on the CPU dry run (naive sampling of 32x32 takes minutes there).
    model_type, config = get_preset(preset).components["model"]
    res = 32 if device.type == "cuda" else 16
    model = MODEL_TYPES[model_type](**{**config, "resolution": res}).to(device)
    # The output layers start at zero (uniform predictions): give them weights so every draw depends on its context.
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".out." in f".{name}":
                p.normal_(0, 0.3)
    cached = model.sample(2, torch.Generator().manual_seed(3), cached=True)
    naive = model.sample(2, torch.Generator().manual_seed(3), cached=False)
    assert cached.device.type == device.type and cached.dtype == torch.uint8 and cached.shape == (2, 3, res, res)
    assert cached.unique().numel() > 4  # not a constant image: the comparison below means something
    differ = (cached != naive).sum().item()
    assert differ == 0, f"cached and naive sampling differ in {differ} of {cached.numel()} values on {device}"
