"""Memory of a model: bytes of its weights, and the peak of one forward (see ``leangen.profile`` for the protocol)."""
from __future__ import annotations

import gc
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_flatten

from leangen.profile.device import sync
from leangen.profile.dispatch import CountingMode
from leangen.profile.inputs import call_model


def state_bytes(model: nn.Module) -> int:
    """Bytes held by the model's parameters and buffers (each storage once)."""
    seen: dict[int, int] = {}
    for t in [*model.parameters(), *model.buffers()]:
        st = t.untyped_storage()
        seen[st._cdata] = st.nbytes()
    return sum(seen.values())


def _clear_constant_cache(model: nn.Module) -> None:
    try:
        from leangen.ops.coords import clear_constant_cache
    except ImportError:  # pragma: no cover
        return
    clear_constant_cache(model)


def peak_memory_mb(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
                   device: torch.device) -> tuple[float, str]:
    """Peak memory (MB) of one forward of ``model`` on ``device``: weights + inputs + peak of the forward.

    Returns ``(megabytes, method)``; ``method`` is ``cuda_max_memory_allocated`` or ``live_tensor_storages``.
    """
    _clear_constant_cache(model)  # cached constants are then allocated inside the measured forward, counted once
    base = state_bytes(model) + sum(t.untyped_storage().nbytes() for t in tree_flatten((args, kwargs))[0]
                                    if isinstance(t, torch.Tensor))
    if device.type == "cuda":
        sync(device)
        gc.collect()
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        with torch.inference_mode():
            out = call_model(model, args, kwargs)
        sync(device)
        peak = torch.cuda.max_memory_allocated(device) - before
        del out
        return (base + peak) / 2 ** 20, "cuda_max_memory_allocated"
    mode = CountingMode(track_memory=True)
    with torch.inference_mode(), mode:
        out = call_model(model, args, kwargs)
    del out
    gc.collect()
    return (base + mode.peak) / 2 ** 20, "live_tensor_storages"
