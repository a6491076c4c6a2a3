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

``dynamic_batch=True`` makes the batch axis symbolic (named ``batch``): the graph runs at any batch size. It is
recorded at batch ``max(batch, 2)`` because ``torch.export`` specializes a size-1 dimension to the constant 1.
Neighborhood attention layers (StyleNAT) are switched to the ``gather`` backend while exporting (and restored
afterwards): exact windows as plain index_select + matmuls, which every exporter and runtime handles.
"""
from __future__ import annotations

import contextlib
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence

import torch
from torch import nn

from leangen.models.base import StyleGenerator, Translator, model_kind
from leangen.models.pretrained import capability, model_label

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


def unsupported_reason(model: nn.Module) -> str | None:
    """Why ``model`` has no ONNX export (one clause), or None when it has one (generators and translators)."""
    if isinstance(model, (StyleGenerator, Translator)):
        return None
    kind = model_kind(model)
    if kind == "likelihood":
        return ("a likelihood model's forward scores images (log p(x)) and its sampling draws each pixel from the "
                "predicted distribution (one after another for ar-decoder and spn), so it has no image-producing "
                "forward to export")
    if kind == "discriminator":
        return "a discriminator is used in training only and is not deployed"
    return "it is neither a z -> image generator nor a label map -> image translator"


def export_onnx(G: StyleGenerator, path: str | os.PathLike, batch: int = 1, truncation_psi: float = 1.0,
                opset: int = 18, exporter: Exporter = "dynamo", dynamic_batch: bool = False) -> Path:
    """Export ``G`` as ``z [batch, z_dim] (float32) -> image [batch, 3, R, R]`` (float32, about [-1, 1]).

    Input and output are named ``z`` and ``image``; with ``dynamic_batch`` their first axis is ``batch`` (any size).
    The model is exported in eval mode on its current device (float32 parameters expected) and restored to its
    previous mode afterwards. Returns the written path.
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
    with _eval_mode(G) as device, _exportable_attention(G):
        graph = GeneratorGraph(G, truncation_psi).eval()
        z = _example_z(G, max(batch, 2) if dynamic_batch else batch, device)
        _export(graph, (z,), ["z"], path, opset, exporter, dynamic_batch)
    return path


def _prepare(path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _exportable_attention(module: nn.Module) -> Iterator[None]:
    """Neighborhood attention layers on the ``gather`` backend (see the module doc); their backends restored after."""
    from leangen.ops.neighborhood import HydraNeighborhoodAttention2d, NeighborhoodAttention2d

    layers = [m for m in module.modules() if isinstance(m, (HydraNeighborhoodAttention2d, NeighborhoodAttention2d))]
    before = [m.backend for m in layers]
    for m in layers:
        m.backend = "gather"
    try:
        yield
    finally:
        for m, backend in zip(layers, before):
            m.backend = backend


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
            exporter: Exporter, dynamic_batch: bool = False) -> None:
    """``torch.onnx.export`` of ``graph(*args)`` to ``path`` with one output named ``image`` (a symbolic first axis
    ``batch`` on input and output with ``dynamic_batch``)."""
    with torch.no_grad(), warnings.catch_warnings(), _quiet_loggers("torch.onnx", "torch.export", "onnxscript"):
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python control flow are expected
        if exporter == "torchscript":
            axes = {n: {0: "batch"} for n in [*input_names, "image"]} if dynamic_batch else None
            torch.onnx.export(graph, args, str(path), input_names=input_names, output_names=["image"],
                              opset_version=opset, do_constant_folding=True, dynamo=False, dynamic_axes=axes)
        else:
            # One dynamic spec per positional input; a model's optional extra inputs (instance maps) are not given.
            shapes = tuple({0: torch.export.Dim("batch")} for _ in args) if dynamic_batch else None
            program = torch.onnx.export(graph, args, input_names=input_names, output_names=["image"],
                                        opset_version=opset, dynamo=True, verbose=False, dynamic_shapes=shapes)
            if program is None:  # pragma: no cover - torch returns the program for dynamo=True
                raise RuntimeError("torch.onnx.export returned no program")
            program.save(str(path))


def takes_images(T: nn.Module) -> bool:
    """Whether a translator reads images ``[B, C, H, W]`` in [-1, 1] (CycleGAN-style, ``input_kind == "image"`` or
    no label classes) rather than label maps."""
    return capability(T, "input_kind") == "image" or not capability(T, "num_classes")


def translator_input(T: Translator, batch: int, height: int, width: int, one_hot: bool = False,
                     seed: int = 0) -> torch.Tensor:
    """Seeded example input of a translator: int64 label ids ``[B, H, W]`` or float one-hot ``[B, K, H, W]``; for
    an image-input translator (``takes_images``) a float image ``[B, C, H, W]`` uniform in [-1, 1]."""
    gen = torch.Generator().manual_seed(seed)
    if takes_images(T):
        channels = int(T.in_channels or 3) if isinstance(T, Translator) else 3
        return torch.rand(batch, channels, height, width, generator=gen) * 2 - 1
    labels = torch.randint(0, T.num_classes, (batch, height, width), generator=gen)
    if one_hot:
        return torch.nn.functional.one_hot(labels, T.num_classes).permute(0, 3, 1, 2).float()
    return labels


def export_translator_onnx(T: Translator, path: str | os.PathLike, batch: int = 1, size: tuple[int, int] | None = None,
                           one_hot: bool = False, opset: int = 18, dynamic_batch: bool = False) -> Path:
    """Export a translator as ``labels int64 [B, H, W]`` (or ``one_hot`` float ``[B, K, H, W]``) -> ``image
    [B, 3, H, W]`` (float32 in (-1, 1)), at a fixed size (default: the model's training size) and a fixed batch,
    or any batch with ``dynamic_batch``.

    The input is named ``labels`` (or ``one_hot``), the output ``image``. Label ids outside the model's classes are
    not checked inside the graph (they give an all-zero one-hot pixel). An image-input translator (CycleGAN) takes
    ``images`` float ``[B, C, H, W]`` in [-1, 1] instead (``one_hot`` does not apply).
    """
    if not isinstance(T, Translator):
        raise TypeError(f"export_translator_onnx needs a translator, got {type(T).__name__}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    h, w = size or T.output_size
    path = _prepare(path)
    with _eval_mode(T) as device, _exportable_attention(T):
        x = translator_input(T, max(batch, 2) if dynamic_batch else batch, h, w, one_hot).to(device)
        name = "images" if takes_images(T) else "one_hot" if one_hot else "labels"
        _export(T, (x,), [name], path, opset, "dynamo", dynamic_batch)
    return path


def export_model_onnx(model: nn.Module, path: str | os.PathLike, batch: int = 1, dynamic_batch: bool = False,
                      opset: int = 18) -> Path:
    """``export_onnx`` (truncation 1) or ``export_translator_onnx`` (label ids, training size), by the model's kind;
    ``TypeError`` with ``unsupported_reason`` for anything else."""
    reason = unsupported_reason(model)
    if reason:
        raise TypeError(f"{model_label(model)} has no ONNX export: {reason}")
    if isinstance(model, StyleGenerator):
        return export_onnx(model, path, batch=batch, opset=opset, dynamic_batch=dynamic_batch)
    return export_translator_onnx(model, path, batch=batch, opset=opset, dynamic_batch=dynamic_batch)  # type: ignore[arg-type]


def check_model_onnx(model: nn.Module, path: str | os.PathLike, atol: float = 1e-4) -> float:
    """``check_onnx`` or ``check_translator_onnx`` of a file written by ``export_model_onnx``."""
    if isinstance(model, StyleGenerator):
        return check_onnx(model, path, atol=atol)
    return check_translator_onnx(model, path, atol=atol)  # type: ignore[arg-type]


def onnx_batches(sess: Any, batches: Sequence[int] = (1, 3)) -> list[int]:
    """The batch sizes to check a session at: the graph's own when fixed, else ``batches`` (a symbolic axis)."""
    b = sess.get_inputs()[0].shape[0]
    return [b] if isinstance(b, int) else list(batches)


def check_translator_onnx(T: Translator, path: str | os.PathLike, atol: float = 1e-4, seed: int = 1,
                          batches: Sequence[int] = (1, 3)) -> float:
    """Run a translator's ONNX file in ONNX Runtime on seeded random labels of the graph's input shape and compare
    with PyTorch; returns the max absolute difference (``AssertionError`` above ``atol``). A graph with a dynamic
    batch axis is checked at each of ``batches``."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    one_hot = inp.name == "one_hot"
    h, w = inp.shape[-2], inp.shape[-1]
    diffs = []
    for b in onnx_batches(sess, batches):
        x = translator_input(T, b, h, w, one_hot, seed)
        (onnx_out,) = sess.run(None, {inp.name: x.numpy()})
        diffs.append(_compare(T, lambda device: T(x.to(device)), onnx_out, atol))
    return max(diffs)


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
               seed: int = 0, batches: Sequence[int] = (1, 3)) -> float:
    """Run the ONNX file in ONNX Runtime (CPU) on random ``z`` and compare with ``G`` in PyTorch.

    Returns the max absolute difference; raises ``AssertionError`` when it exceeds ``atol``. The batch size is
    read from the graph's input; a dynamic batch axis is checked at each of ``batches``. ``truncation_psi`` must
    be the value used for export.
    """
    import numpy as np
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    diffs = []
    for batch in onnx_batches(sess, batches):
        z = torch.randn(batch, G.z_dim, generator=torch.Generator().manual_seed(seed))
        (onnx_out,) = sess.run(None, {inp.name: z.numpy().astype(np.float32)})
        diffs.append(_compare(G, lambda device: G(z.to(device), truncation_psi=truncation_psi, noise_mode="const"),
                              onnx_out, atol))
    return max(diffs)
