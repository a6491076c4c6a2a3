"""Options and error handling shared by the CLI verbs."""
from __future__ import annotations

import errno
import sys
from typing import Any, Callable

import click

from leangen.utils.device import resolve_device


def device_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--device {auto,cpu,cuda[:i]}``, validated into a ``torch.device``."""

    def _convert(ctx: click.Context, param: click.Parameter, value: str):
        try:
            return resolve_device(value)
        except ValueError as e:
            raise click.BadParameter(str(e)) from None

    return click.option("--device", default="auto", show_default=True, callback=_convert, metavar="auto|cpu|cuda[:i]",
                        help="Where to run.")(fn)


def fail(message: str) -> None:
    """Stop the command with a readable error (exit code 1, no traceback)."""
    raise click.ClickException(message)


_KEPT = "leangen.kept"
_OS_ERRORS = {errno.ENOSPC: ("no space left on device", "free some space and run again"),
              errno.EDQUOT: ("disk quota exceeded", "free some space and run again"),
              errno.EROFS: ("read-only file system", "write somewhere else"),
              errno.EACCES: ("permission denied", "check the permissions or write somewhere else"),
              errno.EPERM: ("operation not permitted", "check the permissions or write somewhere else")}


def note_kept(text: str) -> None:
    """Say what survives if the command fails from here on (e.g. images already written); errors append it."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.meta[_KEPT] = text  # ``meta`` is shared by the whole context tree, so the group's handler sees it


def describe_error(e: BaseException, ctx: click.Context | None = None) -> str | None:
    """One line for an error the user can act on: a damaged model or snapshot, a full disk, a path without write
    permission, too little memory. ``None`` for anything else (a bug: it keeps its traceback)."""
    from leangen.models.base import ModelLoadError
    from leangen.runs import CorruptSnapshotError, IncompatibleCheckpointError, SnapshotError

    if isinstance(e, (ModelLoadError, CorruptSnapshotError, IncompatibleCheckpointError, SnapshotError)):
        message = _first_line(e)
    elif isinstance(e, OSError) and (e.errno in _OS_ERRORS or isinstance(e, PermissionError)):
        what, hint = _OS_ERRORS.get(e.errno, _OS_ERRORS[errno.EACCES])  # type: ignore[arg-type]
        message = f"{what}" + (f" ({e.filename})" if e.filename else "") + f"; {hint}"
    elif isinstance(e, MemoryError) or _is_torch_oom(e):
        message = (f"out of memory ({_first_line(e) if str(e) else 'allocation failed'}); ask for less: a smaller "
                   f"--batch, fewer seeds, a lower resolution")
    else:
        return None
    kept = ctx.meta.get(_KEPT) if ctx is not None else None
    return f"{message}. {kept}" if kept else message


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _is_torch_oom(e: BaseException) -> bool:
    """CUDA/MPS out of memory, or the CPU allocator's refusal (a plain ``RuntimeError`` in PyTorch)."""
    if not isinstance(e, RuntimeError) or "torch" not in sys.modules:
        return False
    import torch

    return isinstance(e, torch.OutOfMemoryError) or "can't allocate memory" in str(e)


KIND_NAMES = {"generator": "an image generator", "likelihood": "a likelihood model", "translator": "a translator",
              "discriminator": "a discriminator", "other": "a network"}


def load_model(network: str, device: Any, kinds: tuple[str, ...] | None = None, verb: str = "") -> Any:
    """``leangen.load`` for CLI verbs: clean one-line errors, a note for random-weight presets, and a clear refusal
    when the model is not of one of ``kinds`` (``generator``, ``likelihood``, ``translator``)."""
    import warnings

    import leangen

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = leangen.load(network, device=device)
        except (FileNotFoundError, ValueError, KeyError) as e:
            fail(str(e.args[0] if isinstance(e, KeyError) and e.args else e))
    for w in caught:
        if "randomly initialized" in str(w.message):
            click.echo(f"note: {w.message}", err=True)
    kind = getattr(model, "kind", "other")
    if kinds is not None and kind not in kinds:
        wanted = " or ".join(KIND_NAMES.get(k, k) for k in kinds)
        fail(f"{network} holds {KIND_NAMES.get(kind, kind)} ({getattr(model, 'model_type', type(model).__name__)}); "
             f"{verb or 'this command'} needs {wanted}")
    return model


def load_generator(network: str, device: Any, verb: str = "") -> Any:
    """``load_model`` for verbs that need a z -> image generator."""
    return load_model(network, device, ("generator",), verb)
