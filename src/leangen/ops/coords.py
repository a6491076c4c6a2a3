"""Coordinate grids, learned Fourier features (CIPS / PixelFolder positional inputs) and a cache for tensors that
depend only on parameters.

Coordinates are ``[B, 2, H, W]`` with channel 0 = x (varies along the width) and channel 1 = y (along the height),
both ``linspace(-1, 1)`` so that the corners are exactly +-1. This is the layout ``F.grid_sample`` expects once moved
to the last dimension, so a grid can sample a learned embedding with ``align_corners=True`` at pixel centres.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Callable, Hashable, Iterable

import torch
from torch import nn
import torch.nn.functional as F


def coordinate_grid(height: int, width: int, batch: int = 1, device: torch.device | str | None = None,
                    dtype: torch.dtype | None = None) -> torch.Tensor:
    """``[B, 2, H, W]`` grid: channel 0 is x = linspace(-1, 1, W) along the width, channel 1 is y along the height.

    Non-square sizes get their own x and y spacing (the official ``convert_to_coord_format`` is only right for
    square images). A side of length 1 gets the single coordinate -1.
    """
    if height < 1 or width < 1:
        raise ValueError(f"grid size must be positive, got {height}x{width}")
    dtype = dtype or torch.get_default_dtype()
    x = torch.linspace(-1.0, 1.0, width, device=device, dtype=dtype)
    y = torch.linspace(-1.0, 1.0, height, device=device, dtype=dtype)
    grid = torch.stack([x[None, :].expand(height, width), y[:, None].expand(height, width)])  # [2, H, W]
    return grid[None].expand(batch, -1, -1, -1)  # a view: callers that write into it must clone


class LearnedFourierFeatures(nn.Module):
    """``sin(B @ coords + b)``: a 1x1 conv from 2 coordinates to ``out_channels`` features, then sine.

    ``coords [B, 2, H, W]`` (or ``[B, 2, N, 1]`` for a list of points) -> ``[B, C, H, W]`` in [-1, 1].
    The weight uses the SIREN first-layer init U(+-sqrt(9 / in)) (frequencies up to ~2 cycles over the [-1, 1]
    square), the bias the default conv init U(+-1 / sqrt(in)), as in the CIPS code. Parameters have the shapes of a
    ``Conv2d(2, C, 1)`` so official weights map by renaming.
    """

    def __init__(self, out_channels: int, in_channels: int = 2):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        bound = math.sqrt(9.0 / in_channels)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 1, 1).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(out_channels).uniform_(-1 / math.sqrt(in_channels), 1 / math.sqrt(in_channels)))

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        if coords.ndim != 4 or coords.shape[1] != self.in_channels:
            raise ValueError(f"expected coordinates [B, {self.in_channels}, H, W], got {tuple(coords.shape)}")
        return torch.sin(F.conv2d(coords, self.weight.to(coords.dtype), self.bias.to(coords.dtype)))

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}"


# ----------------------------------------------------------------------------------------------------------------------
# Cache for input-independent tensors

_CACHE_ENABLED = True


class constant_cache:
    """Context manager / switch: ``with constant_cache(False): ...`` recomputes every cached tensor (e.g. to count the
    MACs of the full architecture with ``FlopCounterMode``)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def __enter__(self) -> None:
        global _CACHE_ENABLED
        self._prev, _CACHE_ENABLED = _CACHE_ENABLED, self.enabled

    def __exit__(self, *exc: object) -> None:
        global _CACHE_ENABLED
        _CACHE_ENABLED = self._prev


class _Cache(OrderedDict):
    """Holder of cached tensors. Copies and pickles are empty, so ``copy.deepcopy(G)`` (e.g. an EMA generator) and
    saved objects do not duplicate cached activations; the copy refills its own cache on first use."""

    def __deepcopy__(self, memo: dict) -> "_Cache":
        return _Cache()

    def __reduce__(self):  # type: ignore[override]
        return (_Cache, ())


def eager_inference() -> bool:
    """True when autograd is off and no tracer / compiler / exporter is recording (plain eager inference).

    Models use it to pick shortcuts that are only safe there: reusing cached tensors, in-place epilogues, ``out=``
    buffers. Traced or compiled graphs get the plain functional ops instead.
    """
    return not (torch.is_grad_enabled() or torch.jit.is_tracing() or torch.compiler.is_compiling()
                or torch.compiler.is_exporting())


def _param_state(params: Iterable[torch.Tensor]) -> tuple | None:
    # Storage address + version counter change on every optimizer step, load_state_dict or .to(): a changed parameter
    # gives a new key, so stale entries are never returned. Inference tensors have no version counter: no caching.
    try:
        return tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in params)
    except RuntimeError:
        return None


def cached_constant(owner: nn.Module, key: Hashable, compute: Callable[[], torch.Tensor],
                    params: Iterable[torch.Tensor] | None = None, max_entries: int = 2) -> torch.Tensor:
    """Return ``compute()``, reusing an earlier result when it cannot have changed.

    For tensors that depend only on ``params`` (default: ``owner``'s parameters) and ``key`` (e.g. height, width,
    device, dtype) — coordinate features, not activations. The cache is used only when autograd is off (inference),
    so training always recomputes and gets gradients; it is skipped under tracing / ``torch.compile`` / export so
    graphs compute it from the weights. Entries live in a plain attribute (not in the state dict); the last
    ``max_entries`` keys are kept. Callers must not modify the returned tensor in place.
    """
    if not (_CACHE_ENABLED and eager_inference()):
        return compute()
    state = _param_state(owner.parameters() if params is None else params)
    if state is None:
        return compute()
    full_key = (key, state)
    cache: _Cache = owner.__dict__.setdefault("_constant_cache", _Cache())
    hit = cache.get(full_key)
    if hit is not None:
        cache.move_to_end(full_key)
        return hit
    value = compute()
    cache[full_key] = value
    while len(cache) > max_entries:
        cache.popitem(last=False)
    return value


def clear_constant_cache(module: nn.Module) -> None:
    """Drop every cached tensor held by ``module`` and its children (frees memory)."""
    for m in module.modules():
        m.__dict__.pop("_constant_cache", None)
