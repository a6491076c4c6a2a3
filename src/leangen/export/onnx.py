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
from typing import Any, Iterator, Literal

import torch
from torch import nn

from leangen.models.base import StyleGenerator, Translator

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
    path = _prepare(path)
    with _eval_mode(G) as device:
        graph = GeneratorGraph(G, truncation_psi).eval()
        _export(graph, (_example_z(G, batch, device),), ["z"], path, opset, exporter)
    return path


def _prepare(path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[torch.device]:
    """``module`` in eval mode (its previous mode restored afterwards); yields the device of its parameters."""
    was_training = module.training
    module.eval()
    try:
        yield next(module.parameters()).device
    finally:
        module.train(was_training)


def _export(graph: nn.Module, args: tuple[torch.Tensor, ...], input_names: list[str], path: Path, opset: int,
            exporter: Exporter) -> None:
    """``torch.onnx.export`` of ``graph(*args)`` to ``path`` with one output named ``image``."""
    with torch.no_grad(), warnings.catch_warnings(), _quiet_loggers("torch.onnx", "torch.export", "onnxscript"):
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python control flow are expected
        if exporter == "torchscript":
            torch.onnx.export(graph, args, str(path), input_names=input_names, output_names=["image"],
                              opset_version=opset, do_constant_folding=True, dynamo=False)
        else:
            program = torch.onnx.export(graph, args, input_names=input_names, output_names=["image"],
                                        opset_version=opset, dynamo=True, verbose=False)
            if program is None:  # pragma: no cover - torch returns the program for dynamo=True
                raise RuntimeError("torch.onnx.export returned no program")
            program.save(str(path))


def translator_input(T: Translator, batch: int, height: int, width: int, one_hot: bool = False,
                     seed: int = 0) -> torch.Tensor:
    """Seeded example input of a translator: int64 label ids ``[B, H, W]`` or float one-hot ``[B, K, H, W]``."""
    labels = torch.randint(0, T.num_classes, (batch, height, width), generator=torch.Generator().manual_seed(seed))
    if one_hot:
        return torch.nn.functional.one_hot(labels, T.num_classes).permute(0, 3, 1, 2).float()
    return labels


def export_translator_onnx(T: Translator, path: str | os.PathLike, batch: int = 1, size: tuple[int, int] | None = None,
                           one_hot: bool = False, opset: int = 18) -> Path:
    """Export a translator as ``labels int64 [B, H, W]`` (or ``one_hot`` float ``[B, K, H, W]``) -> ``image
    [B, 3, H, W]`` (float32 in (-1, 1)), at a fixed batch and size (default: the model's training size).

    The input is named ``labels`` (or ``one_hot``), the output ``image``. Label ids outside the model's classes are
    not checked inside the graph (they give an all-zero one-hot pixel).
    """
    if not isinstance(T, Translator):
        raise TypeError(f"export_translator_onnx needs a translator, got {type(T).__name__}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    h, w = size or (T.img_resolution, getattr(T, "img_width", T.img_resolution))
    path = _prepare(path)
    with _eval_mode(T) as device:
        x = translator_input(T, batch, h, w, one_hot).to(device)
        _export(T, (x,), ["one_hot" if one_hot else "labels"], path, opset, "dynamo")
    return path


def check_translator_onnx(T: Translator, path: str | os.PathLike, atol: float = 1e-4, seed: int = 1) -> float:
    """Run a translator's ONNX file in ONNX Runtime on seeded random labels of the graph's input shape and compare
    with PyTorch; returns the max absolute difference (``AssertionError`` above ``atol``)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    one_hot = inp.name == "one_hot"
    b, h, w = inp.shape[0], inp.shape[-2], inp.shape[-1]
    x = translator_input(T, b, h, w, one_hot, seed)
    (onnx_out,) = sess.run(None, {inp.name: x.numpy()})
    return _compare(T, lambda device: T(x.to(device)), onnx_out, atol)


def _compare(module: nn.Module, run: Any, onnx_out: Any, atol: float) -> float:
    """Max |ONNX Runtime output - ``run(device)``| with ``module`` in eval mode; ``AssertionError`` above ``atol``."""
    import numpy as np

    with _eval_mode(module) as device, torch.inference_mode():
        ref = run(device).float().cpu().numpy()
    if onnx_out.shape != ref.shape:
        raise AssertionError(f"ONNX output shape {onnx_out.shape} != PyTorch {ref.shape}")
    diff = float(np.abs(onnx_out - ref).max())
    if not diff <= atol:
        raise AssertionError(f"ONNX Runtime and PyTorch differ by {diff:.3g} (> atol {atol:g})")
    return diff


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
    return _compare(G, lambda device: G(z.to(device), truncation_psi=truncation_psi, noise_mode="const"), onnx_out,
                    atol)
