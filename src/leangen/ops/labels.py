"""Label-map inputs of translators: one-hot encoding and instance boundaries."""
from __future__ import annotations

import torch
from torch import nn

from leangen.data.label_maps import instance_edges  # noqa: F401  (re-exported: models build their input here)


def one_hot_labels(labels: torch.Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """int ``[B, H, W]`` -> ``[B, num_classes, H, W]`` (float one-hot). A float ``[B, K, H, W]`` input is taken as an
    already one-hot (or soft) map and returned as is, cast to ``dtype`` (used by ONNX exports fed one-hot maps)."""
    if labels.is_floating_point():
        if labels.dim() != 4 or labels.shape[1] != num_classes:
            raise ValueError(f"a float label input must be one-hot [B, {num_classes}, H, W], got {tuple(labels.shape)}")
        return labels.to(dtype)
    # A comparison against arange rather than F.one_hot: same result, and it exports to ONNX as Equal + Cast.
    classes = torch.arange(num_classes, device=labels.device).view(1, num_classes, 1, 1)
    return (labels.long().unsqueeze(1) == classes).to(dtype)


def conv_norm(cin: int, cout: int, kernel: int, stride: int = 1, norm: str = "instance", *,
              padding_mode: str = "zeros", spectral: bool = False, bias: bool | None = None) -> nn.Sequential:
    """``Conv2d`` (same padding for odd kernels) + optional norm: ``instance`` (no affine), ``instance_affine`` or
    ``none``. ``bias=None``: a bias only without norm (as SPADE-family code drops the bias a norm would cancel)."""
    use_bias = (norm == "none") if bias is None else bias
    conv: nn.Module = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=use_bias,
                                padding_mode=padding_mode)
    if spectral:
        conv = nn.utils.spectral_norm(conv)
    layers = [conv]
    if norm in ("instance", "instance_affine"):
        layers.append(nn.InstanceNorm2d(cout, affine=norm == "instance_affine"))
    elif norm != "none":
        raise ValueError(f"unknown norm {norm!r}: expected instance, instance_affine or none")
    return nn.Sequential(*layers)


def label_input(labels: torch.Tensor, num_classes: int, instance_edge: bool, instances: torch.Tensor | None,
                dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``(one-hot [B, K, H, W], conditioning [B, K (+1), H, W])``: the one-hot map, and the same with the instance
    boundary channel appended when ``instance_edge`` (zeros when no ``instances`` are given)."""
    onehot = one_hot_labels(labels, num_classes, dtype)
    if not instance_edge:
        return onehot, onehot
    b, _, h, w = onehot.shape
    edges = instance_edges(instances).to(dtype) if instances is not None else onehot.new_zeros(b, 1, h, w)
    return onehot, torch.cat([onehot, edges], 1)
