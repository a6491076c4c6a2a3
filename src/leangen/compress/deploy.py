"""Measured deployment cost of translators: parameters, executed GMACs, CPU latency in eager PyTorch, optionally
``torch.compile``, and ONNX Runtime, at the thread counts given.

Protocol: the models of one call are timed interleaved round-robin in one process (``leangen.profile`` timing), at
batch 1 on their example label maps, under ``torch.inference_mode``; ONNX Runtime sessions are interleaved the same
way, one session per (model, thread count) with ``intra_op_num_threads`` = that count and graph optimizations on.
Latencies are medians in milliseconds. The ONNX files come from ``leangen.export.onnx.export_translator_onnx`` and
are checked against PyTorch in ONNX Runtime before timing.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn


def _median_ms(times: Sequence[float]) -> float:
    return statistics.median(times) * 1e3


def size_report(model: nn.Module) -> dict[str, Any]:
    """``params`` and executed ``gmacs`` per image (the protocol of ``leangen.profile``) of a translator."""
    from leangen.compress.prune import executed_macs
    from leangen.profile import count_params

    return dict(params=count_params(model),
                gmacs=executed_macs(model.model_type, dict(model.config)) / 1e9)  # type: ignore[attr-defined]


def ort_session(path: str | Path, threads: int) -> Any:
    """An ONNX Runtime CPU session using ``threads`` intra-op threads (one inter-op thread)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = int(threads), 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def measure_latency(models: dict[str, nn.Module], threads: Sequence[int] = (1, 2), warmup: int = 2,
                    repeats: int = 5, onnx_dir: str | Path | None = None, compile: bool = False,
                    log: Callable[[str], None] | None = None) -> dict[str, dict[str, Any]]:
    """Latencies of each model (interleaved): ``latency_ms_eager_t{n}``, ``latency_ms_compile_t{n}`` (with
    ``compile``), ``latency_ms_ort_t{n}`` and ``fps_ort_t{n}`` (with ``onnx_dir``) for every thread count ``n``,
    plus ``onnx_max_abs_diff`` (ONNX Runtime vs PyTorch on seeded labels)."""
    from leangen.profile.timing import time_interleaved

    say = log or (lambda _m: None)
    out: dict[str, dict[str, Any]] = {name: {} for name in models}
    inputs = {name: m.example_inputs(1) for name, m in models.items()}  # type: ignore[operator]
    for m in models.values():
        m.eval()
    prev = torch.get_num_threads()
    try:
        for n in threads:
            torch.set_num_threads(int(n))
            calls = [(m, inputs[name], {}) for name, m in models.items()]
            say(f"eager, {n} thread(s)")
            for name, ts in zip(models, time_interleaved(calls, torch.device("cpu"), warmup, repeats, say)):
                out[name][f"latency_ms_eager_t{n}"] = _median_ms(ts)
            if compile:
                say(f"torch.compile, {n} thread(s)")
                compiled = [(torch.compile(m), inputs[name], {}) for name, m in models.items()]
                for name, ts in zip(models, time_interleaved(compiled, torch.device("cpu"), warmup, repeats, say)):
                    out[name][f"latency_ms_compile_t{n}"] = _median_ms(ts)
    finally:
        torch.set_num_threads(prev)
    if onnx_dir is not None:
        from leangen.export.onnx import check_translator_onnx, export_translator_onnx

        paths = {}
        for name, m in models.items():
            say(f"exporting {name} to ONNX")
            paths[name] = export_translator_onnx(m, Path(onnx_dir) / f"{name}.onnx")  # type: ignore[arg-type]
            out[name]["onnx_max_abs_diff"] = check_translator_onnx(m, paths[name], atol=1e-3)  # type: ignore[arg-type]
        for n in threads:
            say(f"ONNX Runtime, {n} thread(s)")
            sessions = {name: ort_session(p, n) for name, p in paths.items()}
            feeds = {name: {s.get_inputs()[0].name: inputs[name][0].numpy()} for name, s in sessions.items()}
            times: dict[str, list[float]] = {name: [] for name in sessions}
            names = list(sessions)
            for r in range(warmup + repeats):
                for j in range(len(names)):  # round-robin, starting one further each round
                    name = names[(r + j) % len(names)]
                    t0 = time.perf_counter()
                    sessions[name].run(None, feeds[name])
                    if r >= warmup:
                        times[name].append(time.perf_counter() - t0)
            for name, ts in times.items():
                out[name][f"latency_ms_ort_t{n}"] = _median_ms(ts)
                out[name][f"fps_ort_t{n}"] = 1e3 / _median_ms(ts)
    return out
