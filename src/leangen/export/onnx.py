"""ONNX export of style-based generators: ``z [B, z_dim] -> image [B, 3, R, R]`` with constant noise.

The graph bakes in the batch size, the resolution, the truncation ``psi`` (towards the stored ``w_avg``) and the
constant noise buffers, so one ``z`` gives the same image as ``G(z, truncation_psi=psi, noise_mode="const")``.

Exporter choice (torch 2.13, CPU): the default is the ``torch.export``-based exporter (``dynamo=True``). The legacy
TorchScript exporter (``dynamo=False``, ``exporter="torchscript"``) only handles CIPS: tracing records the channel
count of ``upfirdn2d``'s depthwise FIR kernel (used by every ``ToRGB`` upsample in StyleGAN2 and PixelFolder) as a
dynamic size, and the ONNX conversion then fails with "convolution for kernel of unknown shape". The dynamo exporter
captures static shapes and exported every family we tested with max |ONNX Runtime - PyTorch| ~1e-5. It emits opset
>= 18 only (lower targets go through a version converter that fails on these graphs), hence ``opset=18``.
While being recorded, the models run their functional path (no caches, no in-place epilogues; ``eager_inference``).
"""
from __future__ import annotations

import contextlib
import logging
import os
import warnings
from pathlib import Path
from typing import Iterator, Literal

import torch
from torch import nn

from leangen.models.base import StyleGenerator

Exporter = Literal["dynamo", "torchscript"]


class GeneratorGraph(nn.Module):
    """``z -> G(z, truncation_psi, noise_mode="const")``: the exported function, as a module."""

    def __init__(self, G: StyleGenerator, truncation_psi: float = 1.0):
        super().__init__()
        self.G = G
        self.truncation_psi = float(truncation_psi)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.G(z, truncation_psi=self.truncation_psi, noise_mode="const")


@contextlib.contextmanager
def _quiet_loggers(*names: str) -> Iterator[None]:
    """Raise the given loggers to ERROR (the exporter logs e.g. skipped torchvision ops at WARNING)."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _example_z(G: StyleGenerator, batch: int, device: torch.device) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(batch, G.z_dim, generator=gen).to(device)


def export_onnx(G: StyleGenerator, path: str | os.PathLike, batch: int = 1, truncation_psi: float = 1.0,
                opset: int = 18, exporter: Exporter = "dynamo") -> Path:
    """Export ``G`` as ``z [batch, z_dim] (float32) -> image [batch, 3, R, R]`` (float32, about [-1, 1]).

    Input and output are named ``z`` and ``image``. The model is exported in eval mode on its current device
    (float32 parameters expected) and restored to its previous mode afterwards. Returns the written path.
    """
    if not isinstance(G, StyleGenerator):
        raise TypeError(f"export_onnx needs a style-based generator, got {type(G).__name__}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if exporter not in ("dynamo", "torchscript"):
        raise ValueError(f"unknown exporter {exporter!r} (dynamo or torchscript)")
    if exporter == "dynamo" and opset < 18:
        raise ValueError(f"the dynamo exporter writes opset >= 18 (got {opset}); exporter='torchscript' supports "
                         "older opsets but only for CIPS")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    device = next(G.parameters()).device
    was_training = G.training
    G.eval()
    try:
        graph = GeneratorGraph(G, truncation_psi).eval()
        z = _example_z(G, batch, device)
        with torch.no_grad(), warnings.catch_warnings(), _quiet_loggers("torch.onnx", "torch.export", "onnxscript"):
            warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python control flow are expected
            if exporter == "torchscript":
                torch.onnx.export(graph, (z,), str(path), input_names=["z"], output_names=["image"],
                                  opset_version=opset, do_constant_folding=True, dynamo=False)
            else:
                program = torch.onnx.export(graph, (z,), input_names=["z"], output_names=["image"],
                                            opset_version=opset, dynamo=True, verbose=False)
                if program is None:  # pragma: no cover - torch returns the program for dynamo=True
                    raise RuntimeError("torch.onnx.export returned no program")
                program.save(str(path))
    finally:
        G.train(was_training)
    return path


def check_onnx(G: StyleGenerator, path: str | os.PathLike, atol: float = 1e-4, truncation_psi: float = 1.0,
               seed: int = 0) -> float:
    """Run the ONNX file in ONNX Runtime (CPU) on random ``z`` and compare with ``G`` in PyTorch.

    Returns the max absolute difference; raises ``AssertionError`` when it exceeds ``atol``. The batch size is
    read from the graph's input. ``truncation_psi`` must be the value used for export.
    """
    import numpy as np
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    batch = inp.shape[0] if isinstance(inp.shape[0], int) else 1
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, G.z_dim, generator=gen)
    (onnx_out,) = sess.run(None, {inp.name: z.numpy().astype(np.float32)})
    device = next(G.parameters()).device
    was_training = G.training
    G.eval()
    try:
        with torch.inference_mode():
            ref = G(z.to(device), truncation_psi=truncation_psi, noise_mode="const").float().cpu().numpy()
    finally:
        G.train(was_training)
    if onnx_out.shape != ref.shape:
        raise AssertionError(f"ONNX output shape {onnx_out.shape} != PyTorch {ref.shape}")
    diff = float(np.abs(onnx_out - ref).max())
    if not diff <= atol:
        raise AssertionError(f"ONNX Runtime and PyTorch differ by {diff:.3g} (> atol {atol:g})")
    return diff
