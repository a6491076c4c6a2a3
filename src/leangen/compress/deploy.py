"""Measured deployment cost of translators: parameters, executed GMACs, CPU latency in eager PyTorch,
``torch.compile`` and ONNX Runtime, at the thread counts given.

Protocol: ``leangen.profile.runtimes`` — every (model, runtime) pair of one call is timed interleaved round-robin
in one process, at batch 1 on the model's example label map, one ONNX Runtime session per (model, thread count);
latencies are medians in milliseconds. The ONNX files come from ``leangen.export.onnx.export_translator_onnx`` and
are checked against PyTorch in ONNX Runtime before timing. ``torch.compile`` that fails on the machine (no C++
compiler) is reported as ``status_compile: "unavailable: <reason>"`` with null latencies, not raised.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from torch import nn

from leangen.profile.runtimes import compile_forward, ort_session  # noqa: F401  (re-exported: the old home)


def size_report(model: nn.Module) -> dict[str, Any]:
    """``params`` and executed ``gmacs`` per image (the protocol of ``leangen.profile``) of a translator."""
    from leangen.compress.prune import executed_macs
    from leangen.profile import count_params

    return dict(params=count_params(model),
                gmacs=executed_macs(model.model_type, dict(model.config)) / 1e9)  # type: ignore[attr-defined]


def measure_latency(models: dict[str, nn.Module], threads: Sequence[int] = (1, 2), warmup: int = 2,
                    repeats: int = 5, onnx_dir: str | Path | None = None, compile: bool = False,
                    compile_backend: str = "inductor",
                    log: Callable[[str], None] | None = None) -> dict[str, dict[str, Any]]:
    """Latencies of each model (interleaved, see ``leangen.profile.runtimes.measure_runtimes``) for every thread
    count ``n``: ``latency_ms_eager_t{n}``; with ``compile`` ``latency_ms_compile_t{n}`` (None when torch.compile
    is unavailable, ``status_compile`` says why); with ``onnx_dir`` ``latency_ms_ort_t{n}``, ``fps_ort_t{n}`` and
    ``onnx_max_abs_diff`` (ONNX Runtime vs PyTorch on seeded labels). Without ``compile`` the compile keys are None
    with ``status_compile: "not requested"``."""
    from leangen.profile.runtimes import measure_runtimes

    runtimes = ["torch"] + (["torch-compile"] if compile else []) + (["onnxruntime"] if onnx_dir is not None else [])
    out = measure_runtimes(models, runtimes, threads, batch=1, warmup=warmup, repeats=repeats, onnx_dir=onnx_dir,
                           compile_backend=compile_backend, log=log)
    if not compile:
        for row in out.values():
            row.update({f"latency_ms_compile_t{n}": None for n in threads}, status_compile="not requested")
    return out
