"""The model registry and the contract every leangen model declares (``PretrainedModel``), plus
``save_pretrained``/``from_pretrained``.

A saved model is a folder with ``config.json`` (model type + constructor arguments) and ``model.safetensors``
(the state dict). No code is pickled; loading rebuilds the module from the registered class.
"""
from __future__ import annotations

import functools
import inspect
import json
import os
from pathlib import Path
from typing import Any, Callable, ClassVar, TypeVar

import torch
from torch import nn

from leangen.utils.files import atomic_path, durable_writer
from leangen.utils.registry import Registry

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
#: Model classes by ``model_type``; importing ``leangen.models`` (done on first lookup) registers every family.
MODEL_TYPES: Registry = Registry("model type", modules=("leangen.models",))

M = TypeVar("M", bound="PretrainedModel")


class ModelLoadError(ValueError):
    """A saved model cannot be loaded: its config and weights disagree, or a file is damaged. Names file and key."""


def register_model(model_type: str) -> Callable[[type[M]], type[M]]:
    """Class decorator: register ``cls`` under ``model_type`` and record its constructor arguments as ``self.config``."""

    def wrap(cls: type[M]) -> type[M]:
        MODEL_TYPES.register(model_type, cls)
        cls.model_type = model_type
        init = cls.__init__
        sig = inspect.signature(init)

        @functools.wraps(init)
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            bound = sig.bind(self, *args, **kwargs)
            bound.apply_defaults()
            init(self, *args, **kwargs)
            cfg = {k: v for k, v in bound.arguments.items() if k != "self"}
            self.config = json.loads(json.dumps(cfg))  # JSON round trip: tuples -> lists, and fails early on bad types

        cls.__init__ = __init__  # type: ignore[method-assign]
        return cls

    return wrap


class PretrainedModel(nn.Module):
    """Base of every registered model: the contract callers read, ``save_pretrained(dir)`` and
    ``from_pretrained(dir)``.

    Declared by every model (class attributes with defaults; subclasses override what differs):
        kind: what the model does, for dispatch in ``leangen.load`` users and CLI verbs: "generator" (z -> image),
            "likelihood" (image <-> log-probability), "translator" (label map or image -> image), "discriminator",
            "other". ``model_task`` maps it to the task.
        input_kind: what ``forward`` takes first: "latent", "image", "labels" or "none" (translators decide it
            from ``in_channels``).
        instance_edge: feeds the boundary map of instance ids as an extra input channel (built with it).
        takes_instances: ``forward`` accepts ``instances=`` (ignored when built without ``instance_edge``).
        prunable: declares ``channel_groups()`` (``leangen.ops.prunable``): ``leangen compress`` takes it.
        sampling_is_cheap: preview grids at snapshots are affordable (likelihood models that sample pixel by pixel
            say no).
        img_resolution / img_width: output height (and width when not square); None where there is no image size.
        img_channels: channels of the images the model makes or scores.
        num_classes: label ids a label-map translator takes (None for every other model).
        z_dim: latent size of a generator (None for models that take no latent).
        bits: bit depth of the images a likelihood model scores (8 for every other model).
        example_inputs(batch): positional inputs of one forward, seeded (profiling, export, tests).

    Code outside the model classes that may also be handed a plain ``nn.Module`` reads these through
    ``capability(model, name)`` (the contract's default when the module declares nothing), never ``getattr``.
    """

    model_type: ClassVar[str] = ""
    kind: ClassVar[str] = "other"
    input_kind: ClassVar[str] = "none"
    instance_edge: bool = False
    takes_instances: ClassVar[bool] = False
    prunable: ClassVar[bool] = False
    sampling_is_cheap: ClassVar[bool] = True
    img_resolution: int | None = None
    img_width: int | None = None
    img_channels: int = 3
    num_classes: int | None = None
    z_dim: int | None = None
    bits: int = 8
    config: dict[str, Any] | None = None  # set on instances by ``register_model``

    @property
    def output_size(self) -> tuple[int, int]:
        """``(height, width)`` of the images the model makes (``img_width`` defaults to ``img_resolution``)."""
        if self.img_resolution is None:
            raise ValueError(f"a {type(self).__name__} has no image size")
        return int(self.img_resolution), int(self.img_width or self.img_resolution)

    def example_inputs(self, batch: int) -> tuple[Any, ...]:
        """Positional inputs of one forward at ``batch`` (seeded). Every model kind defines it; others say so."""
        raise NotImplementedError(f"{type(self).__name__} declares no example_inputs(batch)")

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save_pretrained(self, directory: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``directory`` (each file replaced atomically)."""
        from safetensors.torch import save

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous().clone() for k, v in self.state_dict().items()}
        # Serialized here and written by Python: safetensors' own file writer does not report a full disk as OSError.
        data = save(state, metadata={"model_type": self.model_type})
        with atomic_path(directory / WEIGHTS_NAME) as tmp, durable_writer(tmp) as f:
            f.write(data)
        meta = {"model_type": self.model_type, "config": self.config, "leangen_version": _version()}
        if extra:
            meta.update(extra)
        with atomic_path(directory / CONFIG_NAME) as tmp:
            tmp.write_text(json.dumps(meta, indent=2) + "\n")
        return directory

    @classmethod
    def from_pretrained(cls: type[M], directory: str | os.PathLike, device: str | torch.device = "cpu") -> M:
        """Rebuild a model saved by ``save_pretrained``.

        Raises ``ModelLoadError`` (a ``ValueError``) naming the file and the first offending argument or tensor when
        the folder holds another model, its config and weights disagree, or a file is damaged.
        """
        directory = Path(directory)
        cfg_path = directory / CONFIG_NAME
        if not cfg_path.is_file():
            raise FileNotFoundError(f"{directory} is not a saved leangen model (no {CONFIG_NAME})")
        try:
            meta = json.loads(cfg_path.read_text())
            model_type, config = meta["model_type"], meta["config"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
            raise ModelLoadError(f"{cfg_path} is not a leangen model config: {e}") from None
        if model_type not in MODEL_TYPES:
            raise ModelLoadError(f"{cfg_path}: {MODEL_TYPES.unknown(model_type)}")
        target = MODEL_TYPES[model_type]
        if cls is not PretrainedModel and not issubclass(target, cls):
            raise ModelLoadError(f"{directory} holds a {model_type!r} model, not a {cls.model_type or cls.__name__!r}")
        model = _build(target, config, cfg_path)
        weights = directory / WEIGHTS_NAME
        if not weights.is_file():
            raise FileNotFoundError(f"{directory}: missing {WEIGHTS_NAME}")
        load_weights(model, weights)
        return model.to(device).eval()  # type: ignore[return-value]


#: The task (``leangen.tasks``) that opens data for a model of each kind; translators taking images are unpaired.
KIND_TASKS: dict[str, str] = {"generator": "unconditional", "likelihood": "likelihood", "translator": "paired"}


def capability(model: Any, name: str) -> Any:
    """The declared capability ``name`` of ``model`` (any object: a ``PretrainedModel``, a plain ``nn.Module`` test
    double, a wrapper), or the contract's default when it declares none. The one place a capability is read by name;
    ``AttributeError`` for a name the contract does not declare (a typo, not a missing capability)."""
    default = getattr(PretrainedModel, name)
    if isinstance(default, property) or callable(default):
        raise AttributeError(f"{name!r} is a method of the model contract, not a declared value")
    return getattr(model, name, default)


def model_label(model: Any) -> str:
    """How messages name ``model``: its registered ``model_type``, else its class name."""
    return capability(model, "model_type") or type(model).__name__


def example_inputs(model: Any, batch: int) -> tuple[Any, ...]:
    """Positional inputs of one forward of ``model`` at ``batch`` (seeded): its declared ``example_inputs``, which a
    plain module may define too; ``TypeError`` for a module that defines none."""
    hook = getattr(model, "example_inputs", None)
    if not callable(hook):
        raise TypeError(f"don't know how to make inputs for {type(model).__name__}: give it a method "
                        f"example_inputs(batch) -> tuple")
    try:
        raw = hook(batch)
    except NotImplementedError as e:
        raise TypeError(str(e)) from None
    return (raw,) if isinstance(raw, torch.Tensor) else tuple(raw)


def model_kind(model: Any) -> str:
    """``model.kind``; ``"other"`` for an object that declares none (the one place that default is decided)."""
    kind = getattr(model, "kind", "other")
    return kind if isinstance(kind, str) else "other"


def model_task(model: Any) -> str | None:
    """The task of ``model``: ``unconditional``, ``likelihood``, ``paired`` or ``unpaired`` (a translator taking
    images); None for discriminators and other modules. The one place a model's task is decided."""
    kind = model_kind(model)
    if kind == "translator" and capability(model, "input_kind") == "image":
        return "unpaired"
    return KIND_TASKS.get(kind)


def _build(target: type[M], config: Any, cfg_path: Path) -> M:
    """``target(**config)``, with a ``ModelLoadError`` naming the argument instead of a ``TypeError``."""
    if not isinstance(config, dict):
        raise ModelLoadError(f"{cfg_path}: 'config' must be an object of constructor arguments, got {config!r}")
    params = inspect.signature(target).parameters  # follows the registry's functools.wraps to the real __init__
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [k for k in config if k not in params and not takes_any]
    if unknown:
        raise ModelLoadError(f"{cfg_path}: unknown argument {unknown[0]!r} for model type {target.model_type!r}")
    try:
        return target(**config)
    except (TypeError, ValueError, AssertionError) as e:  # a missing or invalid constructor argument
        raise ModelLoadError(f"{cfg_path}: cannot build a {target.model_type!r} from it: {e}") from None


def read_weights(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of a ``model.safetensors``; ``ModelLoadError`` when it is truncated, empty or not safetensors."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device=str(device))
    except SafetensorError as e:
        raise ModelLoadError(f"{path} is truncated or not a safetensors file ({e})") from None


def check_weights(module: nn.Module, state: dict[str, torch.Tensor], source: str | os.PathLike) -> None:
    """Raise ``ModelLoadError`` naming the first tensor of ``state`` that ``module`` lacks, misses or shapes otherwise.

    Checked before ``load_state_dict``, whose error lists every mismatch of every key in one long traceback.
    """
    expected = module.state_dict()
    bad = f"{source} does not match its config:"
    for key, have in state.items():
        want = expected.get(key)
        if want is None:
            raise ModelLoadError(f"{bad} tensor {key!r} is not part of the {type(module).__name__} the config "
                                 f"builds (weights of another model?)")
        if tuple(have.shape) != tuple(want.shape):
            raise ModelLoadError(f"{bad} tensor {key!r} has shape {list(have.shape)}, the config builds "
                                 f"{list(want.shape)}")
    missing = [k for k in expected if k not in state]
    if missing:
        raise ModelLoadError(f"{bad} tensor {missing[0]!r} is missing ({len(missing)} of the {len(expected)} tensors "
                             f"the config builds are absent)")


def load_weights(module: nn.Module, path: str | os.PathLike) -> None:
    """Read ``path`` (safetensors), check it against ``module`` and load it in place (strict)."""
    device = next(iter(module.state_dict().values()), torch.empty(0)).device
    state = read_weights(path, device)
    check_weights(module, state, path)
    module.load_state_dict(state, strict=True)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("leangen")
    except Exception:  # pragma: no cover - running from a source tree
        return "0+unknown"


