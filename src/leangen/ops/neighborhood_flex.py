"""The ``flex`` backend of ``neighborhood_attention2d``: ``torch.nn.attention.flex_attention`` with a block mask for
the neighborhoods and a ``score_mod`` that adds the relative positional bias.

When both sizes are multiples of the dilation, the ``d_y * d_x`` dilation groups are moved into the batch first
(dilated NA on ``H x W`` is exactly plain NA on each ``H/d x W/d`` sub-grid), so the mask stays block-sparse; other
sizes use a mask that encodes the dilation itself.

On CUDA the kernel is ``torch.compile``d (fused, O(N*k^2) work) once per shape, each shape with its own copy of the
code (``leangen.execution.compile_per_key``): a model's many attention shapes never share dynamo's recompile budget,
so no shape silently drops to eager flex. Eager flex (the CPU, unless ``COMPILE_ON_CPU``) materializes all N^2
scores: it is allowed up to ``EAGER_MAX_TOKENS`` tokens and refused above (``FlexUnavailable``; the caller then
uses ``tiled`` and says so).
"""
from __future__ import annotations

import functools
import warnings
from typing import Any, Callable

import torch

from leangen.execution.compile import CompilePerKey, compile_per_key
from leangen.ops.neighborhood_base import from_dilation_groups, to_dilation_groups

#: Largest query count (per dilation group) eager flex may run: its N x N scores then stay under ~64 MB per head.
EAGER_MAX_TOKENS = 4096
#: Compile flex on the CPU too (tests use it with ``COMPILE_BACKEND = "eager"`` to check the compiled path's shapes).
COMPILE_ON_CPU = False
#: ``torch.compile`` backend of the flex kernels.
COMPILE_BACKEND = "inductor"


class FlexUnavailable(RuntimeError):
    """Flex attention cannot run this call without materializing N^2 scores, or failed to compile."""


def _flex_call(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, score_mod: Any, block_mask: Any,
               scale: float) -> torch.Tensor:
    from torch.nn.attention.flex_attention import flex_attention

    return flex_attention(q, k, v, score_mod=score_mod, block_mask=block_mask, scale=scale)


@functools.lru_cache(maxsize=None)
def _compiled(backend: str) -> CompilePerKey:
    return compile_per_key(_flex_call, backend=backend)  # type: ignore[arg-type]


def compiled_shapes() -> int:
    """How many shapes the compiled flex kernel has been made for in this process (for tests and logs)."""
    return sum(len(_compiled(b)) for b in {COMPILE_BACKEND, "inductor"})


def _axis_terms(idx: torch.Tensor, length: int, k: int, d: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Group, group position and window start of token coordinates ``idx`` along one axis (see ``window_index``)."""
    g, p = idx % d, idx // d
    group_len = (length - g + d - 1) // d
    start = torch.minimum((p - k // 2).clamp(min=0), group_len - k)
    return g, p, start


def _mask_mod(h: int, w: int, kernel: tuple[int, int], dil: tuple[int, int]) -> Callable[..., torch.Tensor]:
    (kh, kw), (dy, dx) = kernel, dil

    def mask_mod(b: Any, head: Any, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
        qy, qx, ky, kx = q_idx // w, q_idx % w, kv_idx // w, kv_idx % w
        gy, _, sy = _axis_terms(qy, h, kh, dy)
        gx, _, sx = _axis_terms(qx, w, kw, dx)
        in_y = (ky % dy == gy) & (ky // dy >= sy) & (ky // dy < sy + kh)
        in_x = (kx % dx == gx) & (kx // dx >= sx) & (kx // dx < sx + kw)
        return in_y & in_x

    return mask_mod


@functools.lru_cache(maxsize=64)
def _block_mask(h: int, w: int, kernel: tuple[int, int], dil: tuple[int, int], device: str) -> Any:
    from torch.nn.attention.flex_attention import create_block_mask

    n = h * w
    return create_block_mask(_mask_mod(h, w, kernel, dil), B=None, H=None, Q_LEN=n, KV_LEN=n, device=device,
                             _compile=device.startswith("cuda"))


def flex_neighborhood_attention2d(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel: tuple[int, int],
                                  dil: tuple[int, int], rpb: torch.Tensor | None, scale: float) -> torch.Tensor:
    """Same contract as ``neighborhood_attention2d`` (arguments already checked)."""
    from torch.nn.attention.flex_attention import flex_attention

    b, heads, h, w, dim = q.shape
    (dy, dx), regroup = dil, h % dil[0] == 0 and w % dil[1] == 0 and dil != (1, 1)
    if regroup:
        q, k, v = (to_dilation_groups(t, dy, dx) for t in (q, k, v))
        gh, gw, gdil = h // dy, w // dx, (1, 1)
    else:
        gh, gw, gdil = h, w, dil
    kh, kw = kernel
    mask = _block_mask(gh, gw, kernel, gdil, str(q.device))
    score_mod = None
    if rpb is not None:
        table = rpb.reshape(heads, -1).to(q.dtype)
        dy_, dx_ = gdil

        def score_mod(score: torch.Tensor, bb: Any, head: torch.Tensor, q_idx: torch.Tensor,
                      kv_idx: torch.Tensor) -> torch.Tensor:
            ry = (kv_idx // gw) // dy_ - (q_idx // gw) // dy_ + kh - 1
            rx = (kv_idx % gw) // dx_ - (q_idx % gw) // dx_ + kw - 1
            # Clamped: the scores of masked pairs are computed too (then dropped) and must index inside the table.
            return score + table[head, ry.clamp(0, 2 * kh - 2) * (2 * kw - 1) + rx.clamp(0, 2 * kw - 2)]

    n = gh * gw
    args = (q.reshape(-1, heads, n, dim), k.reshape(-1, heads, n, dim), v.reshape(-1, heads, n, v.shape[-1]))
    if q.device.type == "cuda" or COMPILE_ON_CPU:
        key = (tuple(args[0].shape), args[2].shape[-1], q.dtype, str(q.device), kernel, gdil, rpb is not None,
               torch.is_grad_enabled())
        try:
            out = _compiled(COMPILE_BACKEND).get(key)(*args, score_mod, mask, scale)
        except Exception as e:  # a compiler failure: the caller falls back to tiled and says why
            raise FlexUnavailable(f"compiled flex attention failed for shape {key[0]}: "
                                  f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
                                  ) from e
    else:
        if n > EAGER_MAX_TOKENS:
            raise FlexUnavailable(f"flex attention runs uncompiled on {q.device.type} and would materialize "
                                  f"{n}x{n} scores")
        with warnings.catch_warnings():
            # Eager flex on small inputs is intended here (bounded by EAGER_MAX_TOKENS above); torch's warning
            # would only repeat that it is not the fused kernel.
            warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
            out = flex_attention(*args, score_mod=score_mod, block_mask=mask, scale=scale)
    out = out.reshape(-1, heads, gh, gw, out.shape[-1])
    return from_dilation_groups(out, dy, dx) if regroup else out
