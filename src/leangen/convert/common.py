"""What every converter of official checkpoints shares: reading a ``.pt`` file without running pickled code,
finding the generator's state dict inside it, taking tensors by their official names with shape checks, and refusing
leftovers.

A converter reads official tensors through a ``StateReader`` (every ``take`` checks the shape the target
configuration implies; a missing key is named), builds the leangen state dict, and ends with ``reader.finish()``,
which names the first official tensor nobody took. ``fill`` then checks the built state dict against the leangen
module key by key, so a converter bug surfaces as a named key, never as ``load_state_dict``'s long traceback.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import math
import re
import struct
import zipfile
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import torch
from torch import nn

from leangen.models.base import ModelLoadError

#: Where the official training scripts keep the generator users sample from, in order of preference.
STATE_KEYS = ("g_ema", "g", "netG", "G", "generator", "state_dict", "model")


class ConversionError(ModelLoadError):
    """An official checkpoint cannot be converted: unreadable, partial, of another model, or options that do not
    fit it. The message names the file and the first offending key."""


def file_sha256(path: str | os.PathLike) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def read_checkpoint(path: str | os.PathLike) -> Any:
    """The object stored in ``path``, read with ``torch.load(weights_only=True)`` (no pickled code runs).

    ``argparse.Namespace`` is the one class allowed besides tensors and containers: the official training scripts
    store their ``args`` with it, and rebuilding one only sets attributes.
    """
    import argparse

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise ConversionError(f"{path} is empty")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except TORCH_LOAD_ERRORS as e:
        raise ConversionError(f"{path} {describe_load_error(e)}") from None


# What ``torch.load(weights_only=True)`` raises for a file that is not a checkpoint: a text file that starts with a
# pickle opcode ends in IndexError/KeyError/struct.error inside the unpickler, not in UnpicklingError.
TORCH_LOAD_ERRORS = (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, RuntimeError, ValueError, IndexError,
                     KeyError, TypeError, AttributeError, OverflowError, struct.error, UnicodeDecodeError)


def describe_load_error(e: BaseException) -> str:
    """The end of one line saying why ``torch.load(weights_only=True)`` refused a file (after its name): PyTorch's
    own text runs to several lines and suggests ``weights_only=False``, which would run the file's pickled code."""
    found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e)) if isinstance(e, pickle.UnpicklingError) else None
    if found:
        return (f"stores more than tensors (it pickles {found.group(1)}); leangen reads it with "
                f"torch.load(weights_only=True) and runs no pickled code. Where you trust the file, re-save just its "
                f"state dict: torch.save(torch.load(F, weights_only=False)['g_ema'], 'g_ema.pt')")
    if isinstance(e, (pickle.UnpicklingError, IndexError, KeyError, TypeError, AttributeError, OverflowError,
                      struct.error, UnicodeDecodeError)):
        return "is not a PyTorch checkpoint (it does not unpickle as tensors)"
    what = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return f"is truncated or not a PyTorch checkpoint ({what[:200]})"


def check_finite(model: nn.Module, source: str | os.PathLike) -> None:
    """``ConversionError`` naming the first parameter or buffer with NaN or infinite values: such a model converts
    without complaint and then draws black images."""
    for name, t in (*model.named_parameters(), *model.named_buffers()):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise ConversionError(f"{source}: {name!r} has {bad} non-finite value(s) (NaN or inf) after conversion; "
                                  f"the checkpoint (or an --option) is damaged")


def _is_state(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def pick_state(obj: Any, source: str | os.PathLike, which: str | None = None) -> tuple[dict[str, torch.Tensor], str]:
    """The generator's state dict inside a loaded checkpoint and where it was found (``"g_ema"``, ``"<root>"``...).

    ``which`` picks an entry by name (e.g. ``g`` instead of ``g_ema``). A ``module.`` prefix (DataParallel) is
    dropped.
    """
    if which is not None:
        if not isinstance(obj, Mapping) or which not in obj:
            have = ", ".join(sorted(map(str, obj))[:12]) if isinstance(obj, Mapping) else type(obj).__name__
            raise ConversionError(f"{source} has no entry {which!r} (it has: {have})")
        found, where = obj[which], which
    elif _is_state(obj):
        found, where = obj, "<root>"
    elif isinstance(obj, Mapping):
        where = next((k for k in STATE_KEYS if k in obj and _is_state(obj[k])), None)
        if where is None:
            have = ", ".join(sorted(map(str, obj))[:12])
            raise ConversionError(f"{source} holds no generator state dict (top-level entries: {have or 'none'}; "
                                  f"expected tensors, or one of {', '.join(STATE_KEYS)})")
        found = obj[where]
    else:
        raise ConversionError(f"{source} holds a {type(obj).__name__}, not a state dict")
    if not _is_state(found):
        raise ConversionError(f"{source}: entry {where!r} is not a state dict of tensors")
    state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in found.items()}
    return state, where


class StateReader:
    """Official tensors by name, each taken at most once, with the shape the target configuration implies."""

    def __init__(self, state: Mapping[str, torch.Tensor], source: str | os.PathLike, fmt: str):
        self.state = dict(state)
        self.source = str(source)
        self.fmt = fmt
        self.used: set[str] = set()

    def has(self, key: str) -> bool:
        return key in self.state

    def shape(self, key: str) -> tuple[int, ...]:
        """Shape of an official tensor (for inferring the configuration); missing keys are named."""
        return tuple(self._get(key).shape)

    def _get(self, key: str) -> torch.Tensor:
        if key not in self.state:
            raise ConversionError(f"{self.source}: tensor {key!r} is missing (a partial {self.fmt} checkpoint, or "
                                  f"options that do not match it)")
        return self.state[key]

    def take(self, key: str, shape: Sequence[int] | None = None) -> torch.Tensor:
        """The tensor ``key`` as float32 (int tensors stay as they are), checked against ``shape`` when given."""
        t = self._get(key)
        if shape is not None and tuple(t.shape) != tuple(shape):
            raise ConversionError(f"{self.source}: tensor {key!r} has shape {list(t.shape)}, the {self.fmt} "
                                  f"configuration read from the checkpoint needs {list(shape)}")
        self.used.add(key)
        return t.float() if t.is_floating_point() else t

    def take_constant(self, key: str, expected: torch.Tensor, atol: float = 1e-6) -> None:
        """Consume a constant buffer (a blur kernel, an index table) after checking it holds what leangen computes."""
        t = self.take(key, tuple(expected.shape))
        if not torch.allclose(t.to(expected.dtype), expected, atol=atol):
            raise ConversionError(f"{self.source}: constant {key!r} differs from the {self.fmt} layout's "
                                  f"(max diff {float((t.to(expected.dtype) - expected).abs().max()):.3g})")

    def skip(self, keys: Iterable[str]) -> None:
        """Mark tensors without a numeric role (placeholders) as consumed."""
        self.used.update(k for k in keys if k in self.state)

    def keys_with_prefix(self, prefix: str) -> list[str]:
        return [k for k in self.state if k.startswith(prefix)]

    def finish(self) -> None:
        """Refuse official tensors nobody took: they belong to another model or to options not given."""
        left = [k for k in self.state if k not in self.used]
        if left:
            raise ConversionError(f"{self.source}: unexpected tensor {left[0]!r} ({len(left)} left over) — not part of "
                                  f"a {self.fmt} generator with the configuration read from the checkpoint")


def fill(model: nn.Module, state: Mapping[str, torch.Tensor], source: str | os.PathLike,
         keep: Iterable[str] = ()) -> None:
    """Load the converted ``state`` into ``model``: every key present with its shape, except ``keep`` (tensors the
    official format does not carry, e.g. ``mapping.w_avg``, which keep the model's own values)."""
    own = model.state_dict()
    keep = set(keep)
    for key, t in state.items():
        if key not in own:
            raise ConversionError(f"{source}: converter produced {key!r}, which a {type(model).__name__} lacks")
        if tuple(t.shape) != tuple(own[key].shape):
            raise ConversionError(f"{source}: {key!r} converts to shape {list(t.shape)}, the model has "
                                  f"{list(own[key].shape)}")
    missing = [k for k in own if k not in state and k not in keep]
    if missing:
        raise ConversionError(f"{source}: nothing in the checkpoint fills {missing[0]!r} ({len(missing)} tensors)")
    merged = {k: (state[k].to(own[k].dtype) if k in state else own[k]) for k in own}
    model.load_state_dict(merged, strict=True)


@torch.no_grad()
def estimate_w_avg(G: nn.Module, samples: int = 10_000, seed: int = 0, batch: int = 1000) -> torch.Tensor:
    """Mean of ``G.mapping(z)`` over ``samples`` seeded standard-normal z, written into ``G.mapping.w_avg``.

    The official checkpoints carry no running w average; their own code estimates ``mean_latent`` the same way.
    """
    gen = torch.Generator().manual_seed(seed)
    dev = G.mapping.w_avg.device
    total = torch.zeros(G.w_dim, dtype=torch.float64)
    done = 0
    while done < samples:
        n = min(batch, samples - done)
        z = torch.randn(n, G.z_dim, generator=gen).to(dev)
        total += G.mapping(z).double().sum(0).cpu()
        done += n
    w_avg = (total / samples).float()
    G.mapping.w_avg.copy_(w_avg.to(dev))
    return w_avg


def parse_options(items: Iterable[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """``["label_nc=13", "reflection_pad=true"]`` -> ``{"label_nc": 13, "reflection_pad": True}`` (ints, floats,
    booleans and ``none`` are parsed; anything else stays a string)."""
    if items is None:
        return {}
    if isinstance(items, Mapping):
        return dict(items)
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--option takes KEY=VALUE, got {item!r}")
        key = key.strip().replace("-", "_")
        if key in out:
            raise ValueError(f"--option {key} is given twice; give each option once")
        parsed = _parse_value(value.strip())
        if isinstance(parsed, float) and not math.isfinite(parsed):
            raise ValueError(f"--option {item}: the value must be a finite number")
        out[key] = parsed
    return out


def _parse_value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


class Options:
    """Converter options with the set a format accepts: unknown names are refused, and the ones used are recorded."""

    def __init__(self, values: Mapping[str, Any], accepted: Mapping[str, str], fmt: str):
        unknown = [k for k in values if k not in accepted]
        if unknown:
            known = ", ".join(sorted(accepted)) or "none"
            raise ConversionError(f"{fmt} conversion has no option {unknown[0]!r} (options: {known})")
        self.values = dict(values)
        self.fmt = fmt

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def __contains__(self, key: str) -> bool:
        return key in self.values
