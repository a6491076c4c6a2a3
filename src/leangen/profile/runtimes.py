"""CPU latency of models through several runtimes side by side: PyTorch eager, ``torch.compile`` and ONNX Runtime.

Protocol (``measure_runtimes``): for each thread count ``n``, ``torch.set_num_threads(n)`` and one ONNX Runtime
session per model with ``intra_op_num_threads = n``; then every (model, runtime) pair runs once per round,
round-robin, each round starting one further (``leangen.profile.timing.time_interleaved``), so machine load hits
every runtime alike. Warm-up rounds are untimed; figures are medians (and 90th percentiles) per batch.

- **Inputs.** One tensor per model, shared by all its runtimes: ``z [B, z_dim]`` for generators (truncation 1,
  constant noise: what ``leangen export`` writes), int64 label ids ``[B, H, W]`` at the training size for
  translators, ``example_inputs`` otherwise.
- **ONNX Runtime.** The model is exported at the measured batch (``leangen.export.export_model_onnx``) and checked
  against PyTorch (``onnx_max_abs_diff``). Sessions run with graph optimizations on, one inter-op thread and
  *spinning off*: an idle ORT worker otherwise busy-waits for a while after each run, on the cores the next timed
  call (of another runtime) is using.
- **torch.compile** (inductor by default) is compiled anew for every thread count, because inductor bakes the
  thread count into the OpenMP kernels it generates; the first (compiling) call happens before timing.

A runtime that cannot run a model (no C++ compiler for inductor, a model without ONNX export, a failed export) is
not an error: its ``status_<tag>`` says ``unavailable: <reason>`` and its figures are None.
"""
from __future__ import annotations

import contextlib
import functools
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from leangen.execution.compile import first_line, guarded_compile
from leangen.utils.registry import Registry

#: Runtime names (``leangen profile --runtime``) and the tag of their keys (``latency_ms_<tag>_t<n>``).
RUNTIMES: Registry = Registry("runtime")
RUNTIMES.register("torch", "eager")
RUNTIMES.register("torch-compile", "compile")
RUNTIMES.register("onnxruntime", "ort")


def ort_session(path: str | Path, threads: int, spinning: bool = False) -> Any:
    """An ONNX Runtime CPU session using ``threads`` intra-op threads (one inter-op thread); ``spinning`` lets idle
    workers busy-wait (ORT's default; off here, see the module doc)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = int(threads), 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not spinning:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


class _Forward(nn.Module):
    """``model(*args, **kwargs)`` with the keyword arguments fixed: the callable every runtime times."""

    def __init__(self, model: nn.Module, kwargs: dict[str, Any]):
        super().__init__()
        self.model, self.kwargs = model, kwargs

    def forward(self, *args: Any) -> Any:
        return self.model(*args, **self.kwargs)


def runtime_inputs(model: nn.Module, batch: int) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """``(forward, args)``: the callable and the CPU inputs every runtime of ``model`` gets (see the module doc)."""
    from leangen.export.onnx import translator_input
    from leangen.models.base import StyleGenerator, Translator
    from leangen.profile.inputs import example_inputs

    if isinstance(model, StyleGenerator):
        z = torch.randn(batch, model.z_dim, generator=torch.Generator().manual_seed(0))
        return _Forward(model, {"truncation_psi": 1.0, "noise_mode": "const"}), (z,)
    if isinstance(model, Translator):
        h, w = model.output_size
        return _Forward(model, {}), (translator_input(model, batch, h, w),)
    args, kwargs = example_inputs(model, batch)
    return _Forward(model, kwargs), tuple(args)


@contextlib.contextmanager
def _inductor_threads(n: int) -> Iterator[None]:
    """Inductor's code generation pinned to ``n`` threads (also part of its cache key), where the config exists."""
    try:
        from torch._inductor import config
        patch = config.patch({"cpp.threads": int(n)})
    except Exception:  # pragma: no cover - an inductor without this option: it reads torch.get_num_threads()
        patch = contextlib.nullcontext()
    with patch:
        yield


def compile_forward(forward: nn.Module, args: Sequence[torch.Tensor], threads: int, backend: str = "inductor",
                    reset: bool = True, atol: float = 1e-3) -> tuple[Callable[..., Any] | None, str, float | None]:
    """``(compiled, "ok", max_abs_diff)`` after one compiling call at ``threads`` threads, whose output is compared
    with the eager output (a compiled path that computes something else is refused: ``status`` says so); or
    ``(None, "unavailable: <reason>", None)`` when ``torch.compile`` fails (e.g. no C++ compiler on the machine).
    ``reset`` first drops every compiled graph of the process (a fresh compilation, not the cached one of another
    thread count), those of other models too."""
    if reset:
        torch._dynamo.reset()
    reasons: list[str] = []
    with _inductor_threads(threads), torch.inference_mode():
        compiled = guarded_compile(forward, "compile", name=type(forward).__name__, log=reasons.append,
                                   backend=backend)
        got = compiled(*args)  # compiling happens here, at the first call
        if compiled.status != "compiled":
            return None, f"unavailable: {compiled.status.removeprefix('eager: ')}", None
        want = forward(*args)
    diff = max_abs_diff(got, want)
    if not diff <= atol:
        return None, f"unavailable: compiled output differs from eager by {diff:.3g} (> {atol:g})", diff
    return compiled, "ok", diff


def max_abs_diff(a: Any, b: Any) -> float:
    """Largest absolute difference between two outputs (tensors, or tuples/lists of tensors)."""
    from torch.utils._pytree import tree_flatten

    xs, ys = tree_flatten(a)[0], tree_flatten(b)[0]
    if len(xs) != len(ys):
        return float("inf")
    return max((float((x.float() - y.float()).abs().max()) if x.numel() else 0.0) for x, y in zip(xs, ys))


def _stats(times: Sequence[float], batch: int) -> dict[str, float]:
    from leangen.profile.timing import latency_stats

    med, p90 = latency_stats(times)
    return {"latency_ms": med * 1e3, "latency_ms_p90": p90 * 1e3, "fps": batch / med}


def measure_runtimes(models: dict[str, nn.Module], runtimes: Sequence[str] = ("torch", "onnxruntime"),
                     threads: Sequence[int] = (1, 2), batch: int = 1, warmup: int = 2, repeats: int = 5,
                     onnx_dir: str | Path | None = None, compile_backend: str = "inductor",
                     log: Callable[[str], None] | None = None) -> dict[str, dict[str, Any]]:
    """Time every model through every runtime (names of ``RUNTIMES``) at every thread count, interleaved, on CPU.

    Models are moved to the CPU in eval mode. Returns, per model name, for each runtime tag ``t`` and thread count
    ``n``: ``latency_ms_<t>_t<n>``, ``latency_ms_p90_<t>_t<n>`` (ms per batch), ``fps_<t>_t<n>`` (images/s) —
    None where the runtime is unavailable — and ``status_<t>`` (``ok`` or ``unavailable: <reason>``); with
    ``onnxruntime`` also ``onnx_max_abs_diff``. ONNX files go to ``onnx_dir`` (default: a temporary folder).
    """
    from leangen.profile.timing import time_interleaved

    unknown = [r for r in runtimes if r not in RUNTIMES]
    if unknown:
        raise RUNTIMES.unknown(unknown[0])
    say = log or (lambda _m: None)
    tags = [RUNTIMES[r] for r in dict.fromkeys(runtimes)]
    out: dict[str, dict[str, Any]] = {name: {f"status_{t}": "ok" for t in tags} for name in models}
    for row in out.values():
        row.update({f"{k}_{t}_t{n}": None for t in tags for n in threads for k in ("latency_ms", "latency_ms_p90",
                                                                                    "fps")})
    forwards = {name: runtime_inputs(m.cpu().eval(), batch) for name, m in models.items()}
    with contextlib.ExitStack() as stack:
        onnx_paths = _export_all(models, forwards, out, batch, Path(onnx_dir) if onnx_dir else
                                 Path(stack.enter_context(tempfile.TemporaryDirectory())), say) if "ort" in tags else {}
        prev = torch.get_num_threads()
        try:
            for n in threads:
                torch.set_num_threads(int(n))
                if "compile" in tags:
                    torch._dynamo.reset()  # once per thread count: a reset between models would drop the earlier ones
                calls, keys = [], []
                for name, (fwd, args) in forwards.items():
                    for t in tags:
                        fn = _runner(t, name, fwd, args, n, onnx_paths, out[name], compile_backend, say)
                        if fn is not None:
                            calls.append((fn, args if t != "ort" else (), {}))
                            keys.append((name, t))
                say(f"timing {len(calls)} model/runtime pairs at {n} thread(s), interleaved")
                for (name, t), ts in zip(keys, time_interleaved(calls, torch.device("cpu"), warmup, repeats, say)):
                    for k, v in _stats(ts, batch).items():
                        out[name][f"{k}_{t}_t{n}"] = v
        finally:
            torch.set_num_threads(prev)
    return out


def _export_all(models: dict[str, nn.Module], forwards: dict[str, tuple[nn.Module, tuple[torch.Tensor, ...]]],
                out: dict[str, dict[str, Any]], batch: int, onnx_dir: Path,
                say: Callable[[str], None]) -> dict[str, tuple[Path, dict[str, Any]]]:
    """Export and check every model for ONNX Runtime; ``{name: (path, feed)}`` of those that made it."""
    from leangen.export.onnx import check_model_onnx, export_model_onnx, unsupported_reason

    paths = {}
    for name, model in models.items():
        reason = unsupported_reason(model)
        if reason:
            out[name]["status_ort"] = f"unavailable: {reason}"
            continue
        say(f"exporting {name} to ONNX")
        try:
            path = export_model_onnx(model, onnx_dir / f"{name}.onnx", batch=batch)
            out[name]["onnx_max_abs_diff"] = check_model_onnx(model, path, atol=1e-3)
        except Exception as e:  # an exporter failure or a failed check: report it, time the other runtimes
            out[name]["status_ort"] = f"unavailable: {first_line(e)}"
            continue
        import onnxruntime as ort

        names = [i.name for i in ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_inputs()]
        paths[name] = (path, {n: a.numpy() for n, a in zip(names, forwards[name][1])})
    return paths


def _runner(tag: str, name: str, forward: nn.Module, args: tuple[torch.Tensor, ...], threads: int,
            onnx_paths: dict[str, tuple[Path, dict[str, Any]]], row: dict[str, Any], compile_backend: str,
            say: Callable[[str], None]) -> Callable[..., Any] | None:
    """The timed callable of one model through one runtime at ``threads`` threads (None: unavailable)."""
    if tag == "eager":
        return forward
    if tag == "ort":
        if name not in onnx_paths:
            return None
        path, feed = onnx_paths[name]
        return functools.partial(ort_session(path, threads).run, None, feed)
    if not row["status_compile"].startswith("ok"):
        return None  # failed at another thread count already: the same reason holds
    say(f"torch.compile of {name} at {threads} thread(s)")
    compiled, status, diff = compile_forward(forward, args, threads, compile_backend, reset=False)
    row["status_compile"] = status
    row["compile_max_abs_diff"] = diff if row.get("compile_max_abs_diff") is None or diff is None else max(
        diff, row["compile_max_abs_diff"])
    return compiled


#: Keys of every ``profile_runtimes`` row (``leangen profile --runtime ... --json``).
RUNTIME_ROW_KEYS = ("name", "family", "task", "resolution", "params", "gmacs", "runtime", "threads", "latency_ms",
                    "latency_ms_p90", "throughput", "speedup_vs_eager", "status", "onnx_max_abs_diff", "compile_max_abs_diff", "device",
                    "device_name", "batch", "dtype", "warmup", "repeats", "torch_version", "onnxruntime_version")


def _load(spec: str | nn.Module) -> tuple[str, str, str, nn.Module]:
    """``(name, family, task, model)`` of a preset name (random weights), a saved model path, or a module."""
    import os

    if isinstance(spec, nn.Module):
        name, model = type(spec).__name__, spec
    elif os.path.exists(spec):
        import leangen

        name, model = str(spec), leangen.load(spec, device="cpu")
    else:
        from leangen.presets import get_preset

        preset = get_preset(str(spec))  # KeyError with close matches for unknown names
        return preset.name, preset.family, preset.task, preset.build(preset.main_component)
    from leangen.models.pretrained import model_kind, model_label

    return name, model_label(model).removesuffix("-generator"), model_kind(model), model


def profile_runtimes(specs: Sequence[str | nn.Module], runtimes: Sequence[str] = ("torch", "onnxruntime"),
                     threads: Sequence[int] = (1, 2), batch: int = 1, warmup: int = 2, repeats: int = 5,
                     log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """``leangen profile --runtime``: every model through PyTorch eager plus ``runtimes`` at every thread count, on
    the CPU in fp32, all interleaved in this process (``measure_runtimes``). One row per (model, runtime, threads)
    with the keys of ``RUNTIME_ROW_KEYS``; ``throughput`` is images/s (FPS), ``speedup_vs_eager`` the eager latency
    at the same thread count over this one's, ``gmacs`` executed multiply-adds per image."""
    from leangen.models.pretrained import capability
    from leangen.profile.device import device_name
    from leangen.profile.macs import count_macs, count_params
    from leangen.profile.inputs import example_inputs

    if batch < 1 or repeats < 1 or warmup < 0 or not threads or min(threads) < 1:
        raise ValueError("batch, repeats and every thread count must be >= 1 and warmup >= 0")
    order = list(dict.fromkeys(["torch", *runtimes]))  # eager is the baseline every other runtime is read against
    loaded = [_load(s) for s in specs]
    models = {name: m for name, _, _, m in loaded}
    if len(models) < len(loaded):  # rows and timings are keyed by name
        raise ValueError("a model is given twice; give each once")
    results = measure_runtimes(models, order, threads, batch, warmup, repeats, log=log)
    try:
        import onnxruntime
        ort_version: str | None = onnxruntime.__version__
    except ImportError:
        ort_version = None
    common = dict(device="cpu", device_name=device_name(torch.device("cpu")), batch=batch, dtype="fp32",
                  warmup=warmup, repeats=repeats, torch_version=torch.__version__, onnxruntime_version=ort_version)
    rows = []
    for name, family, task, model in loaded:
        args, kwargs = example_inputs(model, 1)
        size = dict(params=count_params(model), gmacs=count_macs(model, args, kwargs) / 1e9)
        res = results[name]
        for runtime in order:
            tag = RUNTIMES[runtime]
            for n in threads:
                lat, eager = res[f"latency_ms_{tag}_t{n}"], res[f"latency_ms_eager_t{n}"]
                rows.append(dict(name=name, family=family, task=task,
                                 resolution=capability(model, "img_resolution"), **size, runtime=runtime,
                                 threads=n, latency_ms=lat, latency_ms_p90=res[f"latency_ms_p90_{tag}_t{n}"],
                                 throughput=res[f"fps_{tag}_t{n}"],
                                 speedup_vs_eager=eager / lat if lat and eager else None, status=res[f"status_{tag}"],
                                 onnx_max_abs_diff=res.get("onnx_max_abs_diff") if tag == "ort" else None,
                                 compile_max_abs_diff=res.get("compile_max_abs_diff") if tag == "compile" else None,
                                 **common))
    return rows
