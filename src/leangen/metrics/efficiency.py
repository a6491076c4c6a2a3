"""Efficiency measurements: parameters, executed multiply-adds, peak memory, latency and throughput.

Protocols (see ``DESIGN.md``):

- **MACs** are counted from the operations a forward actually executes, with one ``TorchDispatchMode`` pass that
  reuses the per-op formulas of ``torch.utils.flop_counter`` (``MAC = FLOP / 2``). Counted ops: ``mm``, ``addmm``,
  ``bmm``, ``baddbmm``, every convolution (grouped and depthwise ones included — StyleGAN's [1,3,3,1] blur is a
  depthwise conv and is counted) and the attention kernels. Ignored: element-wise ops (bias, activation, noise,
  modulation/demodulation scaling, ``sin``), reductions, ``grid_sample``, ``F.pad``/fold/unfold copies. They are
  memory-bound and cheap in multiply-add terms, which is exactly why a MAC count is not a latency.
  A transposed conv is counted at its *input* resolution (what runs); ``convention="output_resolution"`` multiplies it
  by ``prod(stride)`` and drops the fixed FIR blur filters, reproducing PixelFolder's Table 1 count of StyleGAN2
  (upsampling convs at the output resolution; 83.74 G at 256 against 45.4 G executed).
  Tensors a model caches between calls because they do not depend on its input (coordinate features of
  CIPS/PixelFolder) are recomputed while counting, so the count is that of a complete forward, as in the official
  code; at steady state these cost < 3% of the total.
- **Counting runs on the ``meta`` device** whenever the model can be rebuilt there (every registered model), so
  counting CIPS-1024 (548M parameters) takes a second and no memory; the same pass estimates peak memory, which
  decides whether a model is built at all.
- **Peak memory**: on CUDA ``torch.cuda.max_memory_allocated`` over one forward; elsewhere the peak of live tensor
  storages seen by a dispatch mode (``mem_method`` in each row says which). Both add the model's own parameters and
  buffers and its inputs, and start with the model's constant cache empty so cached tensors count once.
  Allocator-internal scratch space (oneDNN, cuBLAS workspaces) is not a tensor and is not included on CPU.
- **Timing**: several models are measured in the same process, interleaved round-robin under
  ``torch.inference_mode()``, with the same thread count, so their ratios are fair; figures are medians per batch.
"""
from __future__ import annotations

import gc
import math
import os
import platform
import statistics
import time
import weakref
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

DType = Literal["fp32", "bf16", "fp16"]
MacConvention = Literal["executed", "output_resolution"]
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

# Keys every ``profile_models`` row carries (the ``leangen profile --json`` contract plus context).
ROW_KEYS = ("name", "family", "task", "resolution", "params", "gmacs", "peak_mem_mb", "mem_method", "latency_ms",
            "latency_ms_p90", "throughput", "device", "device_name", "batch", "dtype", "threads", "warmup", "repeats",
            "torch_version", "skipped")


# ----------------------------------------------------------------------------------------------------------------------
# Parameters


def count_params(model: nn.Module) -> int:
    """Number of parameters (shared parameters once; buffers such as constant noise are not parameters)."""
    return sum(p.numel() for p in model.parameters())


def state_bytes(model: nn.Module) -> int:
    """Bytes held by the model's parameters and buffers (each storage once)."""
    seen: dict[int, int] = {}
    for t in [*model.parameters(), *model.buffers()]:
        st = t.untyped_storage()
        seen[st._cdata] = st.nbytes()
    return sum(seen.values())


# ----------------------------------------------------------------------------------------------------------------------
# One dispatch pass: MACs and live-storage memory


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


def _formula_overrides(convention: MacConvention) -> dict[Any, Callable[..., int]]:
    if convention == "executed":
        return {}
    if convention == "output_resolution":
        from torch.utils.flop_counter import shape_wrapper

        aten = torch.ops.aten
        f = shape_wrapper(_conv_output_resolution)
        return {aten.convolution: f, aten._convolution: f, aten.cudnn_convolution: f,
                aten.convolution_overrideable: f}
    raise ValueError(f"unknown MAC convention {convention!r}; expected 'executed' or 'output_resolution'")


def _storage_key(t: torch.Tensor) -> tuple[int, int] | None:
    try:
        st = t.untyped_storage()
        return st._cdata, st.nbytes()
    except (RuntimeError, NotImplementedError, TypeError):  # sparse / nested / functional wrappers: no plain storage
        return None


class _CountingMode(TorchDispatchMode):
    """Counts FLOPs per op with ``torch.utils.flop_counter``'s formulas and, optionally, the peak of live storages.

    Memory tracking: an op output whose storage belongs to none of the op's inputs is a fresh allocation; it stays
    live until the last Python tensor seen on that storage is collected (PyTorch keeps a tensor's Python object alive
    while C++ still holds the tensor, so this is the storage's lifetime). Views and ``out=``/in-place results share an
    input's storage and allocate nothing.
    """

    def __init__(self, convention: MacConvention = "executed", track_memory: bool = False):
        super().__init__()
        from torch.utils.flop_counter import flop_registry

        self.registry = {**flop_registry, **_formula_overrides(convention)}
        self.flops = 0
        self.by_op: Counter[str] = Counter()
        self.uncounted: Counter[str] = Counter()
        self.track_memory = track_memory
        self.live: dict[int, list[int]] = {}  # storage key -> [nbytes, number of live tensors seen on it]
        self.current = 0
        self.peak = 0

    def _release(self, key: int) -> None:
        entry = self.live.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            self.current -= entry[0]
            del self.live[key]

    def _track(self, out: Any, args: Any, kwargs: Any) -> None:
        inputs = {k[0] for k in (_storage_key(t) for t in tree_flatten((args, kwargs))[0]
                                 if isinstance(t, torch.Tensor)) if k is not None}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            k = _storage_key(t)
            if k is None:
                continue
            key, nbytes = k
            entry = self.live.get(key)
            if entry is None:
                if key in inputs:
                    continue  # a view of / write into memory that existed before this pass: not ours to count
                entry = self.live[key] = [nbytes, 0]
                self.current += nbytes
                self.peak = max(self.peak, self.current)
            entry[1] += 1
            weakref.finalize(t, self._release, key)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        packet = func._overloadpacket
        if packet not in self.registry and func is not torch.ops.prim.device.default:
            # Composite ops without a formula may decompose into ones that have one (as FlopCounterMode does).
            with self:
                r = func.decompose(*args, **kwargs)
            if r is not NotImplemented:
                return r
        out = func(*args, **kwargs)
        formula = self.registry.get(packet)
        if formula is not None:
            n = int(formula(*args, **kwargs, out_val=out))
            self.flops += n
            self.by_op[str(packet)] += n
        else:
            self.uncounted[str(packet)] += 1
        if self.track_memory:
            self._track(out, args, kwargs)
        return out


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
        import contextlib

        return contextlib.nullcontext()
    return constant_cache(False)


def _clear_constant_cache(model: nn.Module) -> None:
    try:
        from leangen.ops.coords import clear_constant_cache
    except ImportError:  # pragma: no cover
        return
    clear_constant_cache(model)


def _call(model: nn.Module, inputs: Sequence[Any] | torch.Tensor, kwargs: dict[str, Any] | None) -> Any:
    if isinstance(inputs, torch.Tensor):
        inputs = (inputs,)
    return model(*inputs, **(kwargs or {}))


def count_macs_detailed(model: nn.Module, inputs: Sequence[Any] | torch.Tensor, kwargs: dict[str, Any] | None = None,
                        convention: MacConvention = "executed", track_memory: bool = False) -> MacCount:
    """Run ``model(*inputs, **kwargs)`` once under the counting mode (no grad) and return the detailed count.

    Works on any device, ``meta`` included (shapes are all the formulas need).
    """
    mode = _CountingMode(convention, track_memory=track_memory)
    # no_grad rather than inference_mode: meta tensors and module hooks behave the same and nothing else differs here.
    with torch.no_grad(), _constant_cache_off(), mode:
        out = _call(model, inputs, kwargs)
    del out
    gc.collect()
    return MacCount(macs=mode.flops // 2, by_op={k: v // 2 for k, v in mode.by_op.items()},
                    uncounted_ops=dict(mode.uncounted), peak_bytes=mode.peak if track_memory else None)


def count_macs(model: nn.Module, inputs: Sequence[Any] | torch.Tensor, kwargs: dict[str, Any] | None = None,
               convention: MacConvention = "executed") -> int:
    """Multiply-adds of one ``model(*inputs, **kwargs)`` call, counted from the executed ops (for the whole batch).

    ``convention="output_resolution"`` counts transposed (upsampling) convs at their output resolution and leaves out
    fixed FIR blur filters, the convention of PixelFolder's Table 1 for StyleGAN2 (``_conv_output_resolution``).
    See the module docstring for which ops are counted.
    """
    return count_macs_detailed(model, inputs, kwargs, convention).macs


# ----------------------------------------------------------------------------------------------------------------------
# Inputs and model resolution


def example_inputs(model: nn.Module, batch: int, device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float32) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``(args, kwargs)`` for one forward of ``model`` at ``batch`` on ``device``.

    A model may define ``example_inputs(batch) -> tuple`` (likelihood and translation models do); it is used when
    present. Style generators get ``z [B, z_dim]`` (seeded, drawn on the CPU) and ``noise_mode="const"`` so every
    call does the same work. Floating-point inputs are cast to ``dtype``.
    """
    from leangen.models.base import StyleGenerator

    hook = getattr(model, "example_inputs", None)
    if callable(hook):
        raw = hook(batch)
        args, kwargs = (tuple(raw), {}) if not isinstance(raw, torch.Tensor) else ((raw,), {})
    elif isinstance(model, StyleGenerator):
        z = torch.randn(batch, model.z_dim, generator=torch.Generator("cpu").manual_seed(0))
        args, kwargs = (z,), {"noise_mode": "const"}
    else:
        raise TypeError(f"don't know how to make inputs for {type(model).__name__}: give it a method "
                        f"example_inputs(batch) -> tuple of positional inputs")

    def move(x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            return x.to(device=device, dtype=dtype if x.is_floating_point() else x.dtype)
        return x

    return tree_map(move, args), tree_map(move, kwargs)


def _meta_clone(model: nn.Module) -> nn.Module | None:
    """The same architecture on the ``meta`` device (no memory), rebuilt from a registered model's config."""
    from leangen.models.base import MODEL_TYPES

    cls = MODEL_TYPES.get(getattr(model, "model_type", ""))
    cfg = getattr(model, "config", None)
    if cls is None or cfg is None:
        return None
    try:
        with torch.device("meta"):
            return cls(**cfg).eval()
    except Exception:  # a model whose constructor needs real data: count on the real model instead
        return None


def device_name(device: torch.device) -> str:
    """Human-readable name of the device (GPU model, or CPU model and core count)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name} ({os.cpu_count()} cores)"


def _available_bytes(device: torch.device) -> int | None:
    """Memory a new model may use on ``device`` now (None when unknown)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------------------------------------------------
# profile_models


@dataclass
class _Item:
    name: str
    family: str
    task: str
    resolution: int | None
    build: Callable[[torch.device], nn.Module] | None  # builds on a device (None: ``model`` is given)
    model: nn.Module | None = None
    meta: nn.Module | None = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    row: dict[str, Any] = field(default_factory=dict)
    times: list[float] = field(default_factory=list)


def _resolve(spec: str | os.PathLike | nn.Module, device: torch.device) -> _Item:
    """A preset name, a saved model / snapshot / run directory, or a module -> an item to profile."""
    if isinstance(spec, nn.Module):
        return _item_for_module(type(spec).__name__, spec)
    path = Path(spec)
    if path.exists():
        import leangen

        return _item_for_module(str(spec), leangen.load(path, device=device))
    from leangen.registry import get_preset

    preset = get_preset(str(spec))  # KeyError with close matches for unknown names

    def build(dev: torch.device) -> nn.Module:
        # Built directly on the target device: parameters are never created twice (CIPS-1024 holds 2.2 GB).
        with torch.device(dev):
            return preset.build("G")

    with torch.device("meta"):
        meta = preset.build("G").eval()
    return _Item(preset.name, preset.family, preset.task, preset.resolution, build, meta=meta)


def _item_for_module(name: str, model: nn.Module) -> _Item:
    model_type = getattr(model, "model_type", "") or type(model).__name__
    family = model_type.removesuffix("-generator")
    task = "unconditional" if hasattr(model, "z_dim") else getattr(model, "task", "")
    return _Item(name, family, task, getattr(model, "img_resolution", None), None, model=model.eval(),
                 meta=_meta_clone(model))


def _measure_memory(item: _Item, device: torch.device) -> tuple[float, str]:
    """Peak memory (MB) of one forward of ``item.model`` with its inputs: weights + inputs + peak of the forward."""
    model = item.model
    assert model is not None
    _clear_constant_cache(model)
    base = state_bytes(model) + sum(t.untyped_storage().nbytes() for t in tree_flatten((item.args, item.kwargs))[0]
                                    if isinstance(t, torch.Tensor))
    if device.type == "cuda":
        _sync(device)
        gc.collect()
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        with torch.inference_mode():
            out = _call(model, item.args, item.kwargs)
        _sync(device)
        peak = torch.cuda.max_memory_allocated(device) - before
        del out
        return (base + peak) / 2 ** 20, "cuda_max_memory_allocated"
    mode = _CountingMode(track_memory=True)
    with torch.inference_mode(), mode:
        out = _call(model, item.args, item.kwargs)
    del out
    gc.collect()
    return (base + mode.peak) / 2 ** 20, "live_tensor_storages"


def profile_models(names_or_models: Sequence[str | os.PathLike | nn.Module] | str | nn.Module,
                   device: str | torch.device = "cpu", batch: int = 1, dtype: DType = "fp32", warmup: int = 2,
                   repeats: int = 5, threads: int | None = None, memory_fraction: float = 0.85,
                   log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Profile several models in one process, interleaved, and return one row per model.

    Args:
        names_or_models: preset names, paths accepted by ``leangen.load``, or modules (order is kept). Modules
            passed in are moved to ``device`` and cast to ``dtype`` in place.
        device: ``cpu``, ``cuda``, ``cuda:i`` or ``auto``.
        batch: images per forward; ``latency_ms`` is per batch, ``throughput`` in images/s, ``gmacs`` per image.
        dtype: ``fp32``, ``bf16`` or ``fp16`` — the model's weights and floating inputs are cast to it.
        warmup, repeats: untimed and timed rounds; each round runs every model once (round-robin).
        threads: ``torch.set_num_threads`` for the measurement (restored afterwards); None keeps the current value.
        memory_fraction: a model whose estimated footprint (from a ``meta``-device pass) exceeds this fraction of the
            memory available is not built; its row carries ``skipped`` with the reason and the counted params/MACs.
        log: optional progress callback.

    Returns:
        rows with the keys of ``ROW_KEYS`` (numbers are None for skipped models).
    """
    from leangen.utils.device import resolve_device

    if isinstance(names_or_models, (str, os.PathLike, nn.Module)):
        names_or_models = [names_or_models]
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
    if batch < 1 or repeats < 1 or warmup < 0:
        raise ValueError("batch and repeats must be >= 1 and warmup >= 0")
    dev = resolve_device(device)
    tdtype = DTYPES[dtype]
    say = log or (lambda _msg: None)
    prev_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        items = [_resolve(spec, dev) for spec in names_or_models]
        common = dict(device=str(dev), device_name=device_name(dev), batch=batch, dtype=dtype,
                      threads=torch.get_num_threads(), warmup=warmup, repeats=repeats, torch_version=torch.__version__)

        # 1. Count on meta (or on the real model when it cannot be rebuilt there) and decide what fits.
        max_transient = 0
        for item in items:
            item.row = dict(name=item.name, family=item.family, task=item.task, resolution=item.resolution,
                            params=None, gmacs=None, peak_mem_mb=None, mem_method=None, latency_ms=None,
                            latency_ms_p90=None, throughput=None, **common, skipped=None)
            ref = item.meta if item.meta is not None else item.model
            assert ref is not None
            item.row["params"] = count_params(ref)
            ref = ref.to(tdtype)
            ref_dev = torch.device("meta") if ref is item.meta else dev
            args, kwargs = example_inputs(ref, batch, ref_dev, tdtype)
            say(f"counting {item.name} on {ref_dev}")
            count = count_macs_detailed(ref, args, kwargs, track_memory=ref is item.meta)
            item.row["gmacs"] = count.macs / batch / 1e9
            if item.build is None:
                continue  # given or loaded model: already in memory
            need_state = state_bytes(ref)
            transient = count.peak_bytes or 0
            avail = _available_bytes(dev)
            need = need_state + max(transient, max_transient)
            if avail is not None and need > memory_fraction * avail:
                item.row["skipped"] = (f"needs about {need / 2**30:.1f} GiB on {dev} (weights "
                                       f"{need_state / 2**30:.1f} GiB + activations {transient / 2**30:.1f} GiB), "
                                       f"{avail / 2**30:.1f} GiB available")
                say(f"skipping {item.name}: {item.row['skipped']}")
                continue
            say(f"building {item.name} on {dev}")
            item.model = item.build(dev).to(tdtype).eval()
            item.meta = None
            max_transient = max(max_transient, transient)
        active = [it for it in items if it.model is not None and not it.row["skipped"]]

        # 2. Inputs and peak memory, one model at a time (memory is not a race).
        for item in active:
            assert item.model is not None
            item.model.to(device=dev, dtype=tdtype)
            item.args, item.kwargs = example_inputs(item.model, batch, dev, tdtype)
            say(f"memory of {item.name}")
            item.row["peak_mem_mb"], item.row["mem_method"] = _measure_memory(item, dev)

        # 3. Interleaved timing: round r runs every model once, starting from model r mod N, so no model always
        #    follows the same neighbour (caches, clocks and allocator state are shared).
        n = len(active)
        with torch.inference_mode():
            for r in range(warmup + repeats):
                say(f"{'warm-up' if r < warmup else 'timed'} round {r + 1}/{warmup + repeats}")
                for j in range(n):
                    item = active[(r + j) % n]
                    _sync(dev)
                    t0 = time.perf_counter()
                    out = _call(item.model, item.args, item.kwargs)  # type: ignore[arg-type]
                    _sync(dev)
                    dt = time.perf_counter() - t0
                    del out
                    if r >= warmup:
                        item.times.append(dt)
        for item in active:
            ts = sorted(item.times)
            med = statistics.median(ts)
            p90 = ts[min(len(ts) - 1, math.ceil(0.9 * len(ts)) - 1)]
            item.row.update(latency_ms=med * 1e3, latency_ms_p90=p90 * 1e3, throughput=batch / med)
        return [item.row for item in items]
    finally:
        torch.set_num_threads(prev_threads)
        if dev.type == "cuda":
            torch.cuda.empty_cache()


def ratio_table(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row's params, GMACs, peak memory, latency and throughput divided by those of the first row."""
    if not rows:
        return []
    ref = rows[0]
    out = []
    for row in rows:
        r: dict[str, Any] = {"name": row["name"], "vs": ref["name"]}
        for k in ("params", "gmacs", "peak_mem_mb", "latency_ms", "throughput"):
            a, b = row.get(k), ref.get(k)
            r[k] = a / b if a is not None and b else None
        out.append(r)
    return out


__all__ = ["count_params", "count_macs", "count_macs_detailed", "MacCount", "example_inputs", "profile_models",
           "ratio_table", "state_bytes", "device_name", "ROW_KEYS", "DTYPES"]
