"""leangen: efficient image generation with measured claims.

Quick start::

    import leangen
    G = leangen.load("runs/00000-stylegan2-tiny32-openmoji32")   # a run dir, snapshot, saved model or preset name
    images = G.generate(seeds=range(8), truncation=0.7)          # list of PIL images
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch

__version__ = "0.1.0"

if TYPE_CHECKING:
    from leangen.models.base import PretrainedModel


def load(source: str | os.PathLike, device: str | torch.device = "cpu", role: str = "G_ema") -> "PretrainedModel":
    """Load a ready model (eval mode) from a saved model folder, a training snapshot, a run directory or a preset name.

    - saved model folder (``config.json`` + ``model.safetensors``): loaded as is;
    - snapshot folder (``G_ema/``, ``G/``, ``D/``): the ``role`` component (default the EMA generator);
    - run directory (``runs/00000-...``): its latest snapshot;
    - preset name (``stylegan2-256``): a randomly initialized model, with a warning.
    """
    from leangen.models.base import CONFIG_NAME, PretrainedModel
    from leangen.utils.device import resolve_device

    dev = resolve_device(device)
    path = Path(source)
    if path.exists():
        if (path / CONFIG_NAME).is_file():
            return PretrainedModel.from_pretrained(path, device=dev)
        if (path / role).is_dir():
            return PretrainedModel.from_pretrained(path / role, device=dev)
        from leangen.runs import latest_snapshot

        snap = latest_snapshot(path)
        if snap is not None and (snap / role).is_dir():
            return PretrainedModel.from_pretrained(snap / role, device=dev)
        raise FileNotFoundError(f"{path} holds no leangen model: expected a saved model ({CONFIG_NAME}), "
                                f"a snapshot with {role}/, or a run directory with checkpoints")
    from leangen.registry import get_preset

    try:
        preset = get_preset(str(source))
    except KeyError as e:
        raise FileNotFoundError(f"{source!r} is neither an existing path nor a preset name ({e.args[0]})") from None
    warnings.warn(f"{source!r} is a preset name: returning a randomly initialized model (no trained weights)",
                  stacklevel=2)
    return preset.build("G" if role in ("G", "G_ema") else role).to(dev).eval()


__all__ = ["load", "__version__"]
