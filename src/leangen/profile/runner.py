"""``profile_models``: count, fit-check, build, measure memory and time several models in one process."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import torch
from torch import nn

from leangen.execution import current_policy
from leangen.ops.neighborhood import counted_as_tiled, pin_backends, set_backends
from leangen.profile.device import available_bytes, device_name
from leangen.profile.inputs import example_inputs
from leangen.profile.macs import count_macs_detailed, count_params
from leangen.profile.memory import peak_memory_mb, state_bytes
from leangen.profile.timing import latency_stats, time_interleaved

DType = Literal["fp32", "bf16", "fp16"]
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

# Keys every ``profile_models`` row carries (the ``leangen profile --json`` contract plus context).
ROW_KEYS = ("name", "family", "task", "resolution", "params", "gmacs", "peak_mem_mb", "mem_method", "latency_ms",
            "latency_ms_p90", "throughput", "device", "device_name", "batch", "dtype", "threads", "warmup", "repeats",
            "torch_version", "skipped", "na_backend", "macs_na_backend", "execution")


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


def _meta_clone(model: nn.Module) -> nn.Module | None:
    """The same architecture on the ``meta`` device (no memory), rebuilt from a registered model's config."""
    from leangen.models.pretrained import MODEL_TYPES, capability

    model_type, cfg = capability(model, "model_type"), capability(model, "config")
    if not model_type or model_type not in MODEL_TYPES or cfg is None:
        return None
    cls = MODEL_TYPES[model_type]
    try:
        with torch.device("meta"):
            return cls(**cfg).eval()
    except Exception:  # a model whose constructor needs real data: count on the real model instead
        return None


def _resolve(spec: str | os.PathLike | nn.Module, device: torch.device) -> _Item:
    """A preset name, a saved model / snapshot / run directory, or a module -> an item to profile."""
    if isinstance(spec, nn.Module):
        return _item_for_module(type(spec).__name__, spec)
    path = Path(spec)
    if path.exists():
        import leangen

        return _item_for_module(str(spec), leangen.load(path, device=device))
    from leangen.presets import get_preset

    preset = get_preset(str(spec))  # KeyError with close matches for unknown names

    def build(dev: torch.device) -> nn.Module:
        # Built directly on the target device: parameters are never created twice (CIPS-1024 holds 2.2 GB).
        with torch.device(dev):
            return preset.build(preset.main_component)

    with torch.device("meta"):
        meta = preset.build(preset.main_component).eval()
    return _Item(preset.name, preset.family, preset.task, preset.resolution, build, meta=meta)


def _item_for_module(name: str, model: nn.Module) -> _Item:
    from leangen.models.pretrained import capability, model_label, model_task

    family = model_label(model).removesuffix("-generator")
    task = model_task(model) or ""
    return _Item(name, family, task, capability(model, "img_resolution"), None, model=model.eval(),
                 meta=_meta_clone(model))


def profile_models(names_or_models: Sequence[str | os.PathLike | nn.Module] | str | nn.Module,
                   device: str | torch.device = "cpu", batch: int = 1, dtype: DType = "fp32", warmup: int = 2,
                   repeats: int = 5, threads: int | None = None, memory_fraction: float = 0.85,
                   log: Callable[[str], None] | None = None, na_backend: str | None = None) -> list[dict[str, Any]]:
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
        na_backend: set this neighborhood-attention backend on every model first (None: each model's own).
        log: optional progress callback.

    Returns:
        rows with the keys of ``ROW_KEYS`` (numbers are None for skipped models).
    """
    from leangen.execution import resolve_device

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
        common = dict(execution=dataclasses.replace(current_policy(), device=dev).record(),
                      device=str(dev), device_name=device_name(dev), batch=batch, dtype=dtype,
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
            # Neighborhood attention: the backend timed on ``dev``; the flop counter cannot see inside flex's fused
            # kernel, so flex layers are counted as ``tiled`` (the same windows, computed densely per tile) and the
            # row says so.
            if na_backend is not None:
                set_backends(ref, na_backend)  # type: ignore[arg-type]
            item.row["na_backend"] = ",".join(pin_backends(ref, dev)) or None
            args, kwargs = example_inputs(ref, batch, ref_dev, tdtype)
            say(f"counting {item.name} on {ref_dev}")
            with counted_as_tiled(ref) as counted:  # a given model is timed as it came afterwards
                item.row["macs_na_backend"] = ",".join(counted) or None
                count = count_macs_detailed(ref, args, kwargs, track_memory=ref is item.meta)
            item.row["gmacs"] = count.macs / batch / 1e9
            if item.build is None:
                continue  # given or loaded model: already in memory
            need_state = state_bytes(ref)
            transient = count.peak_bytes or 0
            avail = available_bytes(dev)
            need = need_state + max(transient, max_transient)
            if avail is not None and need > memory_fraction * avail:
                item.row["skipped"] = (f"needs about {need / 2**30:.1f} GiB on {dev} (weights "
                                       f"{need_state / 2**30:.1f} GiB + activations {transient / 2**30:.1f} GiB), "
                                       f"{avail / 2**30:.1f} GiB available")
                say(f"skipping {item.name}: {item.row['skipped']}")
                continue
            say(f"building {item.name} on {dev}")
            item.model = item.build(dev).to(tdtype).eval()
            if na_backend is not None:
                set_backends(item.model, na_backend)  # type: ignore[arg-type]
            pin_backends(item.model, dev)
            item.meta = None
            max_transient = max(max_transient, transient)
        active = [it for it in items if it.model is not None and not it.row["skipped"]]

        # 2. Inputs and peak memory, one model at a time (memory is not a race).
        for item in active:
            assert item.model is not None
            item.model.to(device=dev, dtype=tdtype)
            item.args, item.kwargs = example_inputs(item.model, batch, dev, tdtype)
            say(f"memory of {item.name}")
            item.row["peak_mem_mb"], item.row["mem_method"] = peak_memory_mb(item.model, item.args, item.kwargs, dev)

        # 3. Interleaved timing (see ``time_interleaved``).
        calls = [(item.model, item.args, item.kwargs) for item in active]
        times = time_interleaved(calls, dev, warmup, repeats, say)  # type: ignore[arg-type]
        for item, ts in zip(active, times):
            med, p90 = latency_stats(ts)
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
