"""2-D neighborhood attention (NA / dilated NA) with a relative positional bias, as NATTEN defines it, in PyTorch.

Semantics per axis (length ``L``, odd kernel ``k``, ``r = k // 2``, dilation ``d``, requires ``k * d <= L``): query
``i`` belongs to dilation group ``g = i % d`` at group position ``p = i // d``; the group has ``L_g = ceil((L - g) / d)``
members. Its window starts at ``s = clamp(p - r, 0, L_g - k)`` and holds the keys ``j = g + (s + t) * d`` for
``t = 0 .. k - 1``: every query sees exactly ``k`` keys of its own group, windows are *shifted* (not padded) at the
borders. 2-D is the product of the two axes. The bias ``rpb [heads, 2kh - 1, 2kw - 1]`` is added to the logits after
``q`` is scaled, at index ``(j_y - i_y) / d_y + kh - 1, (j_x - i_x) / d_x + kw - 1``.

Backends of :func:`neighborhood_attention2d` (all differentiable in q, k, v and rpb):

- ``reference``: dense attention over all ``H*W`` keys with a -inf mask: the definition, O(N^2) memory.
- ``gather``: one ``index_select`` of each query's ``k^2`` keys/values, then small matmuls; queries are processed in
  chunks so inference memory stays O(N*k^2) (+ one chunk of gathered keys). Runs anywhere and exports to ONNX.
- ``tiled``: ``T x T`` query tiles attend densely (one batched GEMM) to the ``(T + k - 1)^2`` keys around them, masked
  to each query's window (``leangen.ops.neighborhood_tiled``); more multiply-adds, far faster on CPUs.
- ``flex``: ``torch.nn.attention.flex_attention`` with a block mask and a ``score_mod`` for the bias, compiled
  (``leangen.ops.neighborhood_flex``); used by ``auto`` on CUDA only.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import warnings
from typing import Iterator, Literal, Sequence

import torch
from torch import nn
import torch.nn.functional as F

from leangen.ops.neighborhood_base import (IntPair, check_na_args, from_dilation_groups, pair, separable_bias,
                                          to_dilation_groups, window_index)

Backend = Literal["auto", "reference", "gather", "tiled", "flex"]
BACKENDS = ("auto", "reference", "gather", "tiled", "flex")

logger = logging.getLogger(__name__)

# Elements of gathered keys (per tensor) the gather backend materializes at once: bounds its extra memory.
GATHER_CHUNK_ELEMENTS = 1 << 24


def _flat_windows(h: int, w: int, kernel: tuple[int, int], dilation: tuple[int, int], device: torch.device
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat key indices ``[H*W, kh*kw]`` (into the row-major ``H*W`` tokens) and flat bias indices (into the
    row-major ``(2kh-1)*(2kw-1)`` table) of every query."""
    ky, by = window_index(h, kernel[0], dilation[0], device)
    kx, bx = window_index(w, kernel[1], dilation[1], device)
    keys = (ky[:, None, :, None] * w + kx[None, :, None, :]).reshape(h * w, -1)
    bias = (by[:, None, :, None] * (2 * kernel[1] - 1) + bx[None, :, None, :]).reshape(h * w, -1)
    return keys, bias


def _reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel: tuple[int, int],
               dilation: tuple[int, int], rpb: torch.Tensor | None, scale: float) -> torch.Tensor:
    b, heads, h, w, dim = q.shape
    n = h * w
    keys, bias_idx = _flat_windows(h, w, kernel, dilation, q.device)
    rows = torch.arange(n, device=q.device)[:, None].expand_as(keys)
    logits = (q.reshape(b, heads, n, dim) * scale) @ k.reshape(b, heads, n, dim).transpose(-1, -2)
    dense = torch.full((heads, n, n), float("-inf"), dtype=logits.dtype, device=q.device)
    if rpb is None:
        dense[:, rows, keys] = 0.0
    else:
        dense[:, rows, keys] = rpb.reshape(heads, -1)[:, bias_idx].to(logits.dtype)
    attn = torch.softmax(logits + dense, dim=-1)
    return (attn @ v.reshape(b, heads, n, dim)).reshape(b, heads, h, w, dim)


def _gather(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel: tuple[int, int],
            dilation: tuple[int, int], rpb: torch.Tensor | None, scale: float) -> torch.Tensor:
    b, heads, h, w, dim = q.shape
    n, kk = h * w, kernel[0] * kernel[1]
    keys, _ = _flat_windows(h, w, kernel, dilation, q.device)
    qf, kf, vf = (t.reshape(b, heads, n, dim) for t in (q, k, v))
    bias = None
    if rpb is not None:  # [heads, (H, kh), (W, kw)] -> [heads, N, kk]
        _, by = window_index(h, kernel[0], dilation[0], q.device)
        _, bx = window_index(w, kernel[1], dilation[1], q.device)
        bias = separable_bias(rpb.to(q.dtype), by.reshape(-1), bx.reshape(-1))
        bias = bias.reshape(heads, h, kernel[0], w, kernel[1]).permute(0, 1, 3, 2, 4).reshape(heads, n, kk)
    # A symbolic batch (dynamic-batch ONNX export) must not steer Python control flow: chunk as for batch 1 then.
    rows = b if isinstance(b, int) else 1
    chunk = max(1, GATHER_CHUNK_ELEMENTS // max(1, rows * heads * kk * dim))
    outs = []
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        idx = keys[s:e].reshape(-1)
        kw_ = kf.index_select(2, idx).reshape(b, heads, e - s, kk, dim)
        vw = vf.index_select(2, idx).reshape(b, heads, e - s, kk, dim)
        logits = ((qf[:, :, s:e, None, :] * scale) @ kw_.transpose(-1, -2)).squeeze(-2)  # [B, heads, n, kk]
        if bias is not None:
            logits = logits + bias[:, s:e]
        attn = torch.softmax(logits, dim=-1)
        outs.append((attn[..., None, :] @ vw).squeeze(-2))
    out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)
    return out.reshape(b, heads, h, w, dim)


def _tiled(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel: tuple[int, int],
           dilation: tuple[int, int], rpb: torch.Tensor | None, scale: float) -> torch.Tensor:
    from leangen.ops.neighborhood_tiled import tiled_neighborhood_attention2d

    h, w = q.shape[2], q.shape[3]
    dy, dx = dilation
    if dilation == (1, 1):
        return tiled_neighborhood_attention2d(q, k, v, kernel, rpb, scale)
    if h % dy or w % dx:  # groups of unequal sizes: no sub-grid reshape
        return _gather(q, k, v, kernel, dilation, rpb, scale)
    q, k, v = (to_dilation_groups(t, dy, dx) for t in (q, k, v))
    return from_dilation_groups(tiled_neighborhood_attention2d(q, k, v, kernel, rpb, scale), dy, dx)


@functools.lru_cache(maxsize=1)
def flex_available() -> bool:
    """Whether ``torch.nn.attention.flex_attention`` can be imported."""
    try:
        import torch.nn.attention.flex_attention  # noqa: F401
    except Exception:  # pragma: no cover - old torch
        return False
    return True


def auto_backend(device: torch.device) -> str:
    """What ``auto`` stands for on ``device``: ``flex`` on CUDA (compiled per shape, block-sparse), ``tiled`` elsewhere."""
    return "flex" if device.type == "cuda" and flex_available() else "tiled"


def resolve_backend(backend: Backend, q: torch.Tensor) -> str:
    """The backend a call runs: ``backend``, or for ``auto`` :func:`auto_backend` of ``q``'s device (``tiled`` while
    exporting or tracing: it is plain indexing and matmuls)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown neighborhood attention backend {backend!r} (one of {', '.join(BACKENDS)})")
    if backend != "auto":
        return backend
    tracing = torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export()
    return "tiled" if tracing else auto_backend(q.device)


def set_backends(model: nn.Module, backend: Backend) -> int:
    """Set every NA layer of ``model`` to ``backend``; returns how many layers there are (0: no attention)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown neighborhood attention backend {backend!r} (one of {', '.join(BACKENDS)})")
    layers = [m for m in model.modules() if isinstance(m, (NeighborhoodAttention2d, HydraNeighborhoodAttention2d))]
    for m in layers:
        m.backend = backend
    return len(layers)


def pin_backends(model: nn.Module, device: torch.device) -> list[str]:
    """Replace ``auto`` by the backend it stands for on ``device`` in every NA layer of ``model`` (so a ``meta`` copy
    used for counting runs what the real one runs); returns the distinct backends the layers now use."""
    used = []
    for m in model.modules():
        if isinstance(m, (NeighborhoodAttention2d, HydraNeighborhoodAttention2d)):
            if m.backend == "auto":
                m.backend = auto_backend(device)
            used.append(m.backend)
    return sorted(set(used))


@contextlib.contextmanager
def counted_as_tiled(model: nn.Module) -> Iterator[list[str]]:
    """Within the block, ``flex`` layers of ``model`` run ``tiled`` (the flop counter cannot see inside flex's fused
    kernel); every layer gets its own backend back afterwards. Yields the distinct backends used while counting."""
    layers = [m for m in model.modules() if isinstance(m, (NeighborhoodAttention2d, HydraNeighborhoodAttention2d))]
    saved = [m.backend for m in layers]
    for m in layers:
        m.backend = "tiled" if m.backend == "flex" else m.backend
    try:
        yield sorted({m.backend for m in layers})
    finally:
        for m, b in zip(layers, saved):
            m.backend = b


def neighborhood_attention2d(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel_size: IntPair,
                             dilation: IntPair = 1, rpb: torch.Tensor | None = None, scale: float | None = None,
                             backend: Backend = "auto") -> torch.Tensor:
    """Neighborhood attention of ``q, k, v [B, heads, H, W, head_dim]`` -> ``[B, heads, H, W, head_dim]``.

    ``kernel_size``/``dilation``: int or ``(kh, kw)``; ``rpb``: optional ``[heads, 2kh-1, 2kw-1]`` bias added to the
    logits; ``scale`` multiplies ``q`` (default ``head_dim ** -0.5``; pass 1.0 when q is already scaled).
    ``backend``: ``auto`` | ``reference`` | ``gather`` | ``flex`` (see the module docstring).
    """
    if q.dim() != 5 or k.shape != q.shape or v.shape[:4] != q.shape[:4]:
        raise ValueError(f"q, k, v must be [B, heads, H, W, head_dim] with equal shapes, got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    kernel, dil = pair(kernel_size), pair(dilation)
    h, w = q.shape[2], q.shape[3]
    check_na_args(h, w, kernel, dil)
    if rpb is not None and tuple(rpb.shape) != (q.shape[1], 2 * kernel[0] - 1, 2 * kernel[1] - 1):
        raise ValueError(f"rpb must be [heads, 2kh-1, 2kw-1] = {[q.shape[1], 2 * kernel[0] - 1, 2 * kernel[1] - 1]}, "
                         f"got {list(rpb.shape)}")
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    name = resolve_backend(backend, q)
    if name == "reference":
        return _reference(q, k, v, kernel, dil, rpb, scale)
    if name == "tiled":
        return _tiled(q, k, v, kernel, dil, rpb, scale)
    if name == "gather":
        return _gather(q, k, v, kernel, dil, rpb, scale)
    from leangen.ops.neighborhood_flex import FlexUnavailable, flex_neighborhood_attention2d

    try:
        return flex_neighborhood_attention2d(q, k, v, kernel, dil, rpb, scale)
    except FlexUnavailable as e:
        _warn_once(f"neighborhood attention: {e}; using the tiled backend instead")
        return _tiled(q, k, v, kernel, dil, rpb, scale)


@functools.lru_cache(maxsize=256)
def _warn_once(message: str) -> None:
    """A fallback is announced once per distinct reason, not once per layer and call."""
    logger.warning(message)
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def relative_bias_dense(rpb: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Full-attention relative bias: ``rpb [heads, 2H-1, 2W-1]`` -> ``[heads, H*W, H*W]`` with entry
    ``rpb[:, jy - iy + H - 1, jx - ix + W - 1]`` for query i and key j (NATTEN's key-minus-query convention)."""
    iy, ix = torch.arange(h, device=rpb.device), torch.arange(w, device=rpb.device)
    dy = (iy[None, :] - iy[:, None] + h - 1)  # [q, k]
    dx = (ix[None, :] - ix[:, None] + w - 1)
    dense = separable_bias(rpb, dy.reshape(-1), dx.reshape(-1))  # [heads, (qy, ky), (qx, kx)]
    return dense.reshape(-1, h, h, w, w).permute(0, 1, 3, 2, 4).reshape(-1, h * w, h * w)


def _init_rpb(heads: int, kh: int, kw: int) -> nn.Parameter:
    table = torch.empty(heads, 2 * kh - 1, 2 * kw - 1)
    nn.init.trunc_normal_(table, std=0.02)
    return nn.Parameter(table)


class NeighborhoodAttention2d(nn.Module):
    """Multi-head (dilated) NA on channels-last maps: ``x [B, H, W, C]`` -> ``[B, H, W, C]`` (qkv and output
    projections, bias table per head)."""

    def __init__(self, dim: int, heads: int, kernel_size: IntPair = 7, dilation: IntPair = 1, qkv_bias: bool = True,
                 rel_pos_bias: bool = True, backend: Backend = "auto"):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads, self.head_dim = heads, dim // heads
        self.kernel_size, self.dilation, self.backend = pair(kernel_size), pair(dilation), backend
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.rpb = _init_rpb(heads, *self.kernel_size) if rel_pos_bias else None
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = split_heads(self.qkv(x), self.heads)
        out = neighborhood_attention2d(q, k, v, self.kernel_size, self.dilation, self.rpb, backend=self.backend)
        return self.proj(merge_heads(out))


def split_heads(qkv: torch.Tensor, heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``[B, H, W, 3C]`` -> q, k, v ``[B, heads, H, W, C // heads]`` each."""
    b, h, w, c3 = qkv.shape
    qkv = qkv.reshape(b, h, w, 3, heads, c3 // (3 * heads)).permute(3, 0, 4, 1, 2, 5)
    return qkv[0], qkv[1], qkv[2]


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``[B, heads, H, W, d]`` -> ``[B, H, W, heads * d]``."""
    b, heads, h, w, d = x.shape
    return x.permute(0, 2, 3, 1, 4).reshape(b, h, w, heads * d)


def hydra_head_split(heads: int, groups: int) -> list[int]:
    """Heads per group: equal parts, the last ``heads % groups`` groups get one more (as the reference does)."""
    if groups < 1 or groups > heads:
        raise ValueError(f"cannot split {heads} heads into {groups} groups")
    base, extra = divmod(heads, groups)
    return [base + (1 if i >= groups - extra else 0) for i in range(groups)]


class HydraNeighborhoodAttention2d(nn.Module):
    """Hydra-NA: the heads are split into groups, each with its own kernel, dilation and bias table; the outputs are
    concatenated over heads and projected. ``x [B, H, W, C]`` -> ``[B, H, W, C]``.

    ``kernel_sizes`` and ``dilations``: one entry per group (a single kernel is shared by every group).
    """

    def __init__(self, dim: int, heads: int, kernel_sizes: Sequence[IntPair], dilations: Sequence[IntPair],
                 qkv_bias: bool = True, backend: Backend = "auto"):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        groups = len(dilations)
        kernels = list(kernel_sizes) * groups if len(kernel_sizes) == 1 else list(kernel_sizes)
        if len(kernels) != groups:
            raise ValueError(f"{len(kernel_sizes)} kernel sizes for {groups} dilation groups")
        self.heads, self.head_dim, self.backend = heads, dim // heads, backend
        self.split = hydra_head_split(heads, groups)
        self.kernels = [pair(k) for k in kernels]
        self.dilations = [pair(d) for d in dilations]
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.rpb = nn.ParameterList([_init_rpb(n, *k) for n, k in zip(self.split, self.kernels)])
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = split_heads(self.qkv(x), self.heads)
        outs, h0 = [], 0
        for n, kernel, dil, rpb in zip(self.split, self.kernels, self.dilations, self.rpb):
            sl = slice(h0, h0 + n)
            outs.append(neighborhood_attention2d(q[:, sl], k[:, sl], v[:, sl], kernel, dil, rpb, backend=self.backend))
            h0 += n
        return self.proj(merge_heads(torch.cat(outs, dim=1)))

    def extra_repr(self) -> str:
        return f"heads={self.split}, kernels={self.kernels}, dilations={self.dilations}"


class RelPosSelfAttention2d(nn.Module):
    """Full multi-head self-attention with a relative positional bias ``[heads, 2H-1, 2W-1]`` (StyleNAT's lowest
    level, where a window would cover the whole map anyway). ``x [B, H, W, C]`` -> ``[B, H, W, C]``."""

    def __init__(self, dim: int, heads: int, size: IntPair, qkv_bias: bool = True):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads, self.size = heads, pair(size)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.rpb = _init_rpb(heads, *self.size)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        if (h, w) != self.size:
            raise ValueError(f"RelPosSelfAttention2d was built for {self.size}, got {(h, w)}")
        q, k, v = (t.reshape(b, self.heads, h * w, -1) for t in split_heads(self.qkv(x), self.heads))
        bias = relative_bias_dense(self.rpb, h, w).to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias[None], scale=q.shape[-1] ** -0.5)
        return self.proj(merge_heads(out.reshape(b, self.heads, h, w, -1)))


__all__ = ["neighborhood_attention2d", "NeighborhoodAttention2d", "HydraNeighborhoodAttention2d",
           "RelPosSelfAttention2d", "relative_bias_dense", "separable_bias", "window_index", "hydra_head_split", "resolve_backend",
           "auto_backend", "pin_backends", "set_backends",
           "check_na_args", "BACKENDS"]
