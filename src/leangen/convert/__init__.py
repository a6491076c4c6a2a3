"""Official checkpoints -> leangen models computing the official inference function.

Each format lives in its own module (``stylegan2``, ``pixelfolder``, ``cips``, ``stylenat``, ``asapnet``) and
registers a ``Format``: how to recognise its state dict, the options it accepts, and ``convert(reader, options)``
returning the leangen model and the list of changes the conversion made (so ``config.json`` says what differs from
the file). Use::

    model = leangen.convert.convert_checkpoint("550000.pt")            # format detected from the keys
    leangen.convert.convert_to_directory("550000.pt", "ffhq-pf-256")    # a save_pretrained folder
    leangen.load("550000.pt")                                           # the same, in memory
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import torch

from leangen.convert.common import (ConversionError, Options, StateReader, check_finite, file_sha256, parse_options,
                                   pick_state, read_checkpoint)
from leangen.utils.registry import Registry

if TYPE_CHECKING:
    from leangen.models.base import PretrainedModel

#: Suffixes ``leangen.load`` treats as official checkpoints to convert.
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
FORMAT_MODULES = ("stylegan2", "pixelfolder", "cips", "stylenat", "asapnet")


@dataclass(frozen=True)
class Format:
    name: str
    description: str
    detect: Callable[[Mapping[str, "torch.Tensor"]], bool]   # does this state dict look like the format?
    convert: Callable[[StateReader, Options], tuple["PretrainedModel", list[str]]]
    options: dict[str, str] = field(default_factory=dict)      # accepted option -> help
    has_mapping: bool = False                                   # a style generator whose w_avg is estimated


#: Checkpoint formats by name; the modules of ``FORMAT_MODULES`` register them, imported on first lookup.
FORMATS: Registry = Registry("checkpoint format", modules=tuple(f"leangen.convert.{m}" for m in FORMAT_MODULES))


def register_format(fmt: Format) -> Format:
    """Add ``fmt`` under its name (``ValueError`` on a name registered twice)."""
    return FORMATS.register(fmt.name, fmt)


def formats() -> Registry:
    """Every known format (looking one up imports the format modules, which register them)."""
    FORMATS.discover()
    return FORMATS


def detect_format(state: Mapping[str, "torch.Tensor"]) -> str | None:
    """The one format whose key scheme ``state`` follows, or None."""
    hits = [name for name, f in formats().items() if f.detect(state)]
    return hits[0] if len(hits) == 1 else None


def convert_checkpoint(path: str | os.PathLike, fmt: str | None = None,
                       options: Mapping[str, Any] | list[str] | None = None, which: str | None = None,
                       w_avg_samples: int = 10_000, seed: int = 0, device: Any = None) -> "PretrainedModel":
    """Read an official checkpoint and return the leangen model (eval mode, CPU) that computes its function.

    ``fmt``: one of ``formats()`` (default: detected from the keys; a given format that the keys contradict is
    refused). ``options``: format options (``{"label_nc": 13}`` or ``["label_nc=13"]``). ``which``: the entry of the
    checkpoint dict to read (default ``g_ema``, else ``g``, else the root). Style generators get ``mapping.w_avg``
    estimated from ``w_avg_samples`` seeded z. The record of what was done is ``model.conversion``.
    """
    path = Path(path)
    obj = read_checkpoint(path)
    state, where = pick_state(obj, path, which)
    known = formats()
    detected = detect_format(state)
    if fmt is None:
        if detected is None:
            first = next(iter(state))
            raise ConversionError(f"{path}: not a checkpoint of a known format (first tensor {first!r}); known: "
                                  f"{', '.join(known)} — pass the format explicitly if it is one of them")
        fmt = detected
    elif fmt not in known:
        raise ConversionError(f"unknown checkpoint format {fmt!r} (known: {', '.join(known)})")
    elif detected is not None and detected != fmt:
        raise ConversionError(f"{path} looks like a {detected} checkpoint, not {fmt}")
    spec = known[fmt]
    opts = Options(parse_options(options), spec.options, fmt)
    reader = StateReader(state, path, fmt)
    model, changes = spec.convert(reader, opts)
    reader.finish()
    record: dict[str, Any] = {"format": fmt, "source": str(path), "source_sha256": file_sha256(path), "entry": where,
                              "options": opts.values, "changes": list(changes)}
    if spec.has_mapping:
        stored = obj.get("latent_avg") if isinstance(obj, Mapping) and where != "<root>" else None
        if isinstance(stored, torch.Tensor) and tuple(stored.shape) == (model.w_dim,):
            # rosinality's convert_weight.py keeps the TF checkpoint's dlatent_avg: the w average truncation used
            model.mapping.w_avg.copy_(stored.float())
            record["w_avg"] = {"from": "latent_avg stored in the checkpoint"}
        else:
            from leangen.convert.common import estimate_w_avg

            # On ``device`` when given (the CLI's --device): 10k mapping passes; the model comes back on the CPU.
            estimate_w_avg(model.to(device or "cpu"), samples=w_avg_samples, seed=seed)
            model.cpu()
            record["w_avg"] = {"estimated_from_z": w_avg_samples, "seed": seed,
                               "note": "the checkpoint stores no w average; mean of mapping(z), z ~ N(0, I)"}
    check_finite(model, path)  # NaN weights, a NaN latent_avg: refused rather than a model that draws black images
    model.conversion = record  # type: ignore[assignment]
    return model.eval()


def convert_to_directory(path: str | os.PathLike, out: str | os.PathLike, fmt: str | None = None,
                         options: Mapping[str, Any] | list[str] | None = None, which: str | None = None,
                         w_avg_samples: int = 10_000, seed: int = 0, overwrite: bool = False,
                         device: Any = None) -> Path:
    """``convert_checkpoint`` then ``save_pretrained(out)``; ``config.json`` gets the record as ``converted_from``.

    ``out`` must not hold a model already (``overwrite`` replaces it), nor a training run or snapshot (whose
    ``generate``/``eval`` the model would shadow): ``ValueError`` before anything is read."""
    check_out_folder(out, overwrite)
    model = convert_checkpoint(path, fmt, options, which, w_avg_samples, seed, device)
    return model.save_pretrained(out, extra={"converted_from": model.conversion})  # type: ignore[attr-defined]


def check_out_folder(out: str | os.PathLike, overwrite: bool = False) -> None:
    """``ValueError`` when ``out`` is a training run, a snapshot, part of one, or (without ``overwrite``) a folder
    that already holds a model or other files."""
    from leangen import runs
    from leangen.models.base import CONFIG_NAME

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder")
    for p in (out, *out.parents):
        if (p / "training_options.json").is_file() or (p / runs.STATE_NAME).is_file():
            raise ValueError(f"--out {out} is inside the training run or snapshot {p}; a model there would shadow it "
                             f"for generate/eval: choose another folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        held = "a model" if (out / CONFIG_NAME).is_file() else "files"
        raise ValueError(f"--out {out} already holds {held}; pass --overwrite to replace it, or choose a new folder")


def looks_like_checkpoint(path: str | os.PathLike) -> bool:
    """A single file with a PyTorch checkpoint suffix (what ``leangen.load`` converts on the fly)."""
    p = Path(path)
    return p.is_file() and p.suffix.lower() in CHECKPOINT_SUFFIXES


__all__ = ["ConversionError", "Format", "FORMATS", "convert_checkpoint", "convert_to_directory", "detect_format",
           "check_out_folder", "formats", "looks_like_checkpoint", "register_format"]
