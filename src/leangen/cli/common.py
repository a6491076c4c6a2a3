"""Options and error handling shared by the CLI verbs."""
from __future__ import annotations

import errno
import functools
import inspect
import sys
from typing import Any, Callable

import click

from leangen.execution import COMPILE_MODES, PRECISIONS, ExecutionPolicy


def execution_options(fn: Callable[..., Any] | None = None, *, precision: bool = False,
                      compile: bool = False, na_backend: bool = False) -> Any:
    """The execution-policy options of a verb, turned into one activated ``ExecutionPolicy``.

    Always ``--device {auto,cpu,cuda[:i]}``, ``--deterministic`` and ``--tf32/--no-tf32``; with ``precision=True``
    also ``--precision {fp32,bf16,fp16}``, with ``compile=True`` also ``--compile {off,compile,cudagraphs}``, with
    ``na_backend=True`` also ``--na-backend`` (neighborhood attention of the models it loads or builds). The verb
    receives ``policy`` (an ``ExecutionPolicy``) when it has such a parameter, else ``device`` (the policy's indexed
    ``torch.device``).
    """
    if fn is None:
        return functools.partial(execution_options, precision=precision, compile=compile, na_backend=na_backend)
    names = ("device", "deterministic", "tf32", "precision", "compile_mode", "na_backend")
    wants_policy = "policy" in inspect.signature(fn).parameters

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {k: kwargs.pop(k, None) for k in names}
        try:
            policy = ExecutionPolicy.create(values["device"] or "auto", precision=values["precision"] or "fp32",
                                            tf32=values["tf32"], deterministic=bool(values["deterministic"]),
                                            compile=values["compile_mode"] or "off", na_backend=values["na_backend"])
        except ValueError as e:
            raise click.UsageError(str(e)) from None
        policy.activate()
        if wants_policy:
            kwargs["policy"] = policy
        else:
            kwargs["device"] = policy.device
        return fn(*args, **kwargs)

    opts = [click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda[:i]",
                         help="Where to run (cuda means the current device, or cuda:LOCAL_RANK under torchrun)."),
            click.option("--deterministic", is_flag=True,
                         help="Reproducible GPU runs where PyTorch allows it (TF32 off, deterministic kernels)."),
            click.option("--tf32/--no-tf32", default=None,
                         help="TF32 matrix math on CUDA [default: on, off with --deterministic].")]
    if precision:
        opts.append(click.option("--precision", type=click.Choice(list(PRECISIONS)), default=None,
                                 help="Compute precision (bf16/fp16 autocast; weights stay fp32). [default: fp32]"))
    if compile:
        opts.append(click.option("--compile", "compile_mode", type=click.Choice(list(COMPILE_MODES)), default=None,
                                 help="torch.compile the model (cudagraphs: CUDA graphs too); falls back to eager "
                                      "and says why when compiling fails. [default: off]"))
    if na_backend:
        from leangen.ops.neighborhood import BACKENDS

        opts.append(click.option("--na-backend", type=click.Choice(list(BACKENDS)), default=None,
                                 help="Neighborhood attention backend of StyleNAT models (recorded in their config; "
                                      "auto: flex compiled per shape on CUDA, tiled elsewhere). [default: the "
                                      "model's]"))
    for opt in reversed(opts):
        wrapper = opt(wrapper)
    return wrapper


def device_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``execution_options`` without precision and compile choices (the verbs that only place models)."""
    return execution_options(fn)


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


#: What ``--compile`` compiles, per model kind: the image-producing pass (sampling loops of likelihood models are not).
COMPILED_METHODS = {"generator": ("synthesis",), "translator": ("forward",)}


def load_model(network: str, device: Any, kinds: tuple[str, ...] | None = None, verb: str = "") -> Any:
    """``leangen.load`` for CLI verbs: clean one-line errors, a note for random-weight presets, and a clear refusal
    when the model is not of one of ``kinds`` (``generator``, ``likelihood``, ``translator``).

    ``device``: a ``torch.device`` or an ``ExecutionPolicy`` (the model is then prepared by it: memory format and,
    with ``--compile``, its image-producing pass compiled)."""
    import warnings

    import leangen

    policy = device if isinstance(device, ExecutionPolicy) else None
    device = policy.device if policy is not None else device

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = leangen.load(network, device=device)
        except (FileNotFoundError, ValueError, KeyError) as e:
            fail(str(e.args[0] if isinstance(e, KeyError) and e.args else e))
    for w in caught:  # every one, e.g. that an older snapshot was used because the newest is damaged
        click.echo(f"{'note' if 'randomly initialized' in str(w.message) else 'warning'}: {w.message}", err=True)
    from leangen.models.pretrained import capability, model_kind, model_label

    kind = model_kind(model)
    if kinds is not None and kind not in kinds:
        wanted = " or ".join(KIND_NAMES.get(k, k) for k in kinds)
        fail(f"{network} holds {KIND_NAMES.get(kind, kind)} ({model_label(model)}); "
             f"{verb or 'this command'} needs {wanted}")
    if policy is not None and policy.na_backend is not None:
        from leangen.ops.neighborhood import set_backends

        if not set_backends(model, policy.na_backend):  # type: ignore[arg-type]
            fail(f"--na-backend applies to models with neighborhood attention (StyleNAT); {network} has none")
        if "na_backend" in (capability(model, "config") or {}):
            model.config["na_backend"] = policy.na_backend
    if policy is not None:
        policy.prepare(model, COMPILED_METHODS.get(kind, ()), log=lambda m: click.echo(f"note: {m}", err=True))
    return model


def load_generator(network: str, device: Any, verb: str = "") -> Any:
    """``load_model`` for verbs that need a z -> image generator."""
    return load_model(network, device, ("generator",), verb)
