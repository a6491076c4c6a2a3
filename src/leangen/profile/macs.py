"""Multiply-add counting: the two conventions, and ``count_macs`` over one forward (see ``leangen.profile``)."""
from __future__ import annotations

import contextlib
import gc
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Sequence

import torch
from torch import nn

from leangen.profile.dispatch import CountingMode
from leangen.profile.inputs import call_model

MacConvention = Literal["executed", "output_resolution"]


def count_params(model: nn.Module) -> int:
    """Number of parameters (shared parameters once; buffers such as constant noise are not parameters)."""
    return sum(p.numel() for p in model.parameters())


def _conv_output_resolution(x_shape: Any, w_shape: Any, _bias: Any, stride: Any, _padding: Any, _dilation: Any,
                            transposed: bool, _output_padding: Any = None, groups: int = 1, *args: Any,
                            out_shape: Any = None, **kwargs: Any) -> int:
    """FLOPs of a convolution under the convention of PixelFolder's Table 1 (83.77 GMACs for StyleGAN2-256).

    - A transposed conv is counted at its output resolution (``prod(stride)`` times what executes): a stride-2
      transposed 3x3 conv costs what a 3x3 conv at the *input* resolution costs, but is booked as if it ran at the
      output resolution.
    - Fixed FIR filters (depthwise convs, one input channel per group: StyleGAN's [1,3,3,1] blur) count zero, because
      the official code runs them as a custom CUDA op (``upfirdn2d``) that module-based counters do not see.

    With both rules StyleGAN2-256 gives 83.74 G, the figure reproduced from the official code.
    """
    from torch.utils.flop_counter import conv_flop_count

    if groups > 1 and w_shape[1] == 1 and groups == x_shape[1]:
        return 0
    flops = conv_flop_count(x_shape, w_shape, out_shape, transposed=transposed)
    if transposed:
        flops *= math.prod(int(s) for s in stride)
    return flops


def formula_overrides(convention: MacConvention) -> dict[Any, Callable[..., int]]:
    """Per-op FLOP formulas that replace ``torch.utils.flop_counter``'s under ``convention`` (none for executed)."""
    if convention == "executed":
        return {}
    if convention == "output_resolution":
        from torch.utils.flop_counter import shape_wrapper

        aten = torch.ops.aten
        f = shape_wrapper(_conv_output_resolution)
        return {aten.convolution: f, aten._convolution: f, aten.cudnn_convolution: f,
                aten.convolution_overrideable: f}
    raise ValueError(f"unknown MAC convention {convention!r}; expected 'executed' or 'output_resolution'")


@dataclass
class MacCount:
    """Result of ``count_macs_detailed``: total multiply-adds, per counted op, and the ops executed but not counted."""

    macs: int
    by_op: dict[str, int] = field(default_factory=dict)
    uncounted_ops: dict[str, int] = field(default_factory=dict)  # op -> number of calls (element-wise, copies, ...)
    peak_bytes: int | None = None  # peak of live storages allocated during the forward (when tracked)


def _constant_cache_off() -> Any:
    """Context that makes leangen models recompute their input-independent cached tensors (count a full forward)."""
    try:
        from leangen.ops.coords import constant_cache
    except ImportError:  # pragma: no cover - ops absent in a stripped install
        return contextlib.nullcontext()
    return constant_cache(False)


def count_macs_detailed(model: nn.Module, inputs: Sequence[Any] | torch.Tensor, kwargs: dict[str, Any] | None = None,
                        convention: MacConvention = "executed", track_memory: bool = False) -> MacCount:
    """Run ``model(*inputs, **kwargs)`` once under the counting mode (no grad) and return the detailed count.

    Works on any device, ``meta`` included (shapes are all the formulas need).
    """
    mode = CountingMode(formula_overrides(convention), track_memory=track_memory)
    # no_grad rather than inference_mode: meta tensors and module hooks behave the same and nothing else differs here.
    with torch.no_grad(), _constant_cache_off(), mode:
        out = call_model(model, inputs, kwargs)
    del out
    gc.collect()
    return MacCount(macs=mode.flops // 2, by_op={k: v // 2 for k, v in mode.by_op.items()},
                    uncounted_ops=dict(mode.uncounted), peak_bytes=mode.peak if track_memory else None)


def count_macs(model: nn.Module, inputs: Sequence[Any] | torch.Tensor, kwargs: dict[str, Any] | None = None,
               convention: MacConvention = "executed") -> int:
    """Multiply-adds of one ``model(*inputs, **kwargs)`` call, counted from the executed ops (for the whole batch).

    ``convention="output_resolution"`` counts transposed (upsampling) convs at their output resolution and leaves out
    fixed FIR blur filters, the convention of PixelFolder's Table 1 for StyleGAN2 (``_conv_output_resolution``).
    See ``leangen.profile`` for which ops are counted.
    """
    return count_macs_detailed(model, inputs, kwargs, convention).macs
