"""Inputs for one profiled forward: ``example_inputs`` builds them, ``call_model`` applies them."""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn
from torch.utils._pytree import tree_map


def call_model(model: nn.Module, inputs: Sequence[Any] | torch.Tensor, kwargs: dict[str, Any] | None) -> Any:
    """``model(*inputs, **kwargs)``; a single tensor counts as one positional input."""
    if isinstance(inputs, torch.Tensor):
        inputs = (inputs,)
    return model(*inputs, **(kwargs or {}))


def example_inputs(model: nn.Module, batch: int, device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float32) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``(args, kwargs)`` for one forward of ``model`` at ``batch`` on ``device``.

    A model may define ``example_inputs(batch) -> tuple`` (models whose inputs are not a latent); it is used when
    present. Style generators get ``z [B, z_dim]`` (seeded, drawn on the CPU) and ``noise_mode="const"`` so every
    call does the same work. Floating-point inputs are cast to ``dtype``.
    """
    from leangen.models.base import StyleGenerator
    from leangen.models.pretrained import example_inputs as declared_inputs

    args = declared_inputs(model, batch)  # plain modules may define example_inputs too
    # a style generator's z, with the noise fixed so every call does the same work
    kwargs: dict[str, Any] = {"noise_mode": "const"} if isinstance(model, StyleGenerator) else {}

    def move(x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            return x.to(device=device, dtype=dtype if x.is_floating_point() else x.dtype)
        return x

    return tree_map(move, args), tree_map(move, kwargs)
