"""leangen: efficient image generation with measured claims.

Quick start::

    import leangen
    G = leangen.load("runs/00000-stylegan2-tiny32-openmoji-32")  # a run dir, snapshot, saved model or preset name
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


def load(source: str | os.PathLike, device: str | torch.device = "cpu", role: str | None = None) -> "PretrainedModel":
    """Load a ready model (eval mode) from a saved model folder, a training snapshot, a run directory or a preset name.

    - saved model folder (``config.json`` + ``model.safetensors``): loaded as is;
    - snapshot folder: the module users load (its ``index.json`` names it: ``G_ema`` for GANs, ``model`` for
      likelihood models...), or the module ``role`` (``G``, ``D``; a frozen ``teacher`` comes from its recorded path);
    - run directory (``runs/00000-...``): its newest intact snapshot, as above (damaged newer ones are passed
      over with a warning);
    - an official checkpoint file (``.pt``/``.pth``/``.ckpt``/``.bin`` of PixelFolder, CIPS, rosinality StyleGAN2,
      StyleNAT or ASAP-Net): converted in memory, format detected from its tensor names (``leangen.convert``;
      ``leangen convert`` saves the result once instead);
    - ``zoo:<name>`` (``zoo:stylegan2-openmoji32``): a trained model shipped with leangen (``leangen.zoo``; its
      sha256 is checked first; ``leangen models --zoo`` lists them);
    - preset name (``stylegan2-256``): a randomly initialized model, with a warning.

    What comes back is a generator (``.generate(seeds)``), a likelihood model (``.log_prob``, ``.generate``) or a
    translator (``.translate(labels)``); ``model.kind`` says which. Never imports the trainer.
    """
    from leangen import runs
    from leangen.models.base import CONFIG_NAME, PretrainedModel
    from leangen.execution import resolve_device

    dev = resolve_device(device)
    if isinstance(source, str) and source.startswith("zoo:"):
        from leangen import zoo

        return zoo.load(source, device=dev)
    path = Path(source).expanduser()
    if path.exists():
        from leangen.convert import convert_checkpoint, looks_like_checkpoint

        if looks_like_checkpoint(path):
            return convert_checkpoint(path).to(dev)
        if (path / CONFIG_NAME).is_file():
            return PretrainedModel.from_pretrained(path, device=dev)
        if (path / runs.STATE_NAME).is_file() or (path / "G_ema").is_dir():
            return _load_from_snapshot(path, role, dev)
        snaps = runs.list_snapshots(path)
        if not snaps:
            raise FileNotFoundError(f"{path} holds no leangen model: expected a saved model ({CONFIG_NAME}), "
                                    f"a snapshot, or a run directory with checkpoints")
        damaged = []
        for snap in reversed(snaps):  # the newest snapshot whose files pass their checksums
            try:
                model = _load_from_snapshot(snap, role, dev)
            except runs.CorruptSnapshotError as e:
                damaged.append(f"{snap.name} ({e})")
                continue
            if damaged:
                warnings.warn(f"loaded {snap}, the newest intact snapshot; passed over {'; '.join(damaged)}",
                              stacklevel=2)
            return model
        raise runs.CorruptSnapshotError(f"no intact snapshot in {path}: {'; '.join(damaged)}")
    from leangen.presets import get_preset

    try:
        preset = get_preset(str(source))
    except KeyError as e:
        raise FileNotFoundError(f"{source!r} is neither an existing path nor a preset name ({e.args[0]})") from None
    warnings.warn(f"{source!r} is a preset name: returning a randomly initialized model (no trained weights)",
                  stacklevel=2)
    if role in (None, "G_ema"):
        role = preset.main_component
    return preset.build(role).to(dev).eval()


def _load_from_snapshot(snap: Path, role: str | None, dev: torch.device) -> "PretrainedModel":
    import json

    from leangen import runs
    from leangen.models.base import PretrainedModel

    index_path = snap / "index.json"
    index = json.loads(index_path.read_text()) if index_path.is_file() else {}
    role = role or index.get("entry") or "G_ema"  # snapshots from before the index held G_ema/G/D
    info = (index.get("modules") or {}).get(role, {})
    if info.get("role") == "frozen":
        return load(info["source"], device=dev)
    if not (snap / role).is_dir():
        have = sorted(p.name for p in snap.iterdir() if p.is_dir())
        raise FileNotFoundError(f"{snap} has no module {role!r} (it has {', '.join(have) or 'none'})")
    runs.verify_snapshot(snap, [role])  # checksums from index.json: a damaged file is named, not loaded
    return PretrainedModel.from_pretrained(snap / role, device=dev)


__all__ = ["load", "__version__"]
