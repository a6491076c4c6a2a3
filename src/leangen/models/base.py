"""What every leangen model shares: a type registry, ``save_pretrained``/``from_pretrained`` and, for style-based
generators, the mapping network, truncation and seeded generation.

A saved model is a folder with ``config.json`` (model type + constructor arguments) and ``model.safetensors``
(the state dict). No code is pickled; loading rebuilds the module from the registered class.
"""
from __future__ import annotations

import functools
import inspect
import json
import os
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Literal, TypeVar

import numpy as np
import torch
from torch import nn

from leangen.ops.mapping import MappingNetwork
from leangen.ops.modulated import NoiseMode
from leangen.utils.files import atomic_path, durable_writer
from leangen.utils.seeds import latents_for_seeds, parse_seeds

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MODEL_TYPES: dict[str, type["PretrainedModel"]] = {}

M = TypeVar("M", bound="PretrainedModel")


class ModelLoadError(ValueError):
    """A saved model cannot be loaded: its config and weights disagree, or a file is damaged. Names file and key."""


def register_model(model_type: str) -> Callable[[type[M]], type[M]]:
    """Class decorator: register ``cls`` under ``model_type`` and record its constructor arguments as ``self.config``."""

    def wrap(cls: type[M]) -> type[M]:
        if model_type in MODEL_TYPES and MODEL_TYPES[model_type] is not cls:
            raise ValueError(f"model type {model_type!r} registered twice")
        MODEL_TYPES[model_type] = cls
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
    """Base of every registered model: ``save_pretrained(dir)`` and ``from_pretrained(dir)``."""

    model_type: ClassVar[str] = ""
    # What the model does, for dispatch in ``leangen.load`` users and CLI verbs: "generator" (z -> image),
    # "likelihood" (image <-> log-probability), "translator" (label map -> image), "discriminator", "other".
    kind: ClassVar[str] = "other"
    config: dict[str, Any]

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
        target = MODEL_TYPES.get(model_type)
        if target is None:
            raise ModelLoadError(f"{cfg_path}: unknown model type {model_type!r} "
                                 f"(known: {', '.join(sorted(MODEL_TYPES))})")
        if cls is not PretrainedModel and not issubclass(target, cls):
            raise ModelLoadError(f"{directory} holds a {model_type!r} model, not a {cls.model_type or cls.__name__!r}")
        model = _build(target, config, cfg_path)
        weights = directory / WEIGHTS_NAME
        if not weights.is_file():
            raise FileNotFoundError(f"{directory}: missing {WEIGHTS_NAME}")
        load_weights(model, weights)
        return model.to(device).eval()  # type: ignore[return-value]


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


OutputType = Literal["pil", "pt", "np"]


class StyleGenerator(PretrainedModel):
    """Base of style-based generators (StyleGAN2, CIPS, PixelFolder).

    Subclasses build ``self.mapping`` through ``_init_mapping`` and implement ``synthesis(ws, noise_mode)`` taking
    ``ws [B, num_ws, w_dim]`` and returning images ``[B, 3, R, R]`` in [-1, 1] (not clamped).
    """

    kind: ClassVar[str] = "generator"
    z_dim: int
    w_dim: int
    num_ws: int
    img_resolution: int
    img_channels: int = 3

    def _init_mapping(self, z_dim: int, w_dim: int, num_layers: int, lr_mul: float, num_ws: int, resolution: int) -> None:
        self.z_dim, self.w_dim, self.num_ws, self.img_resolution = z_dim, w_dim, num_ws, resolution
        self.mapping = MappingNetwork(z_dim, w_dim, num_layers, lr_mul)

    def synthesis(self, ws: torch.Tensor, noise_mode: NoiseMode = "random", **kwargs: Any) -> torch.Tensor:
        raise NotImplementedError

    def map(self, z: torch.Tensor, truncation_psi: float = 1.0, update_w_avg: bool = False) -> torch.Tensor:
        """``z [B, z_dim]`` -> ``ws [B, num_ws, w_dim]`` (the same w broadcast to every layer)."""
        w = self.mapping(z, truncation_psi=truncation_psi, update_w_avg=update_w_avg)
        return w.unsqueeze(1).expand(-1, self.num_ws, -1)

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0, noise_mode: NoiseMode = "random",
                **synthesis_kwargs: Any) -> torch.Tensor:
        """``z [B, z_dim]`` -> images ``[B, 3, R, R]``, roughly in [-1, 1]."""
        return self.synthesis(self.map(z, truncation_psi), noise_mode=noise_mode, **synthesis_kwargs)

    @torch.no_grad()
    def generate(self, seeds: int | str | Iterable[int], truncation: float = 1.0, noise_mode: NoiseMode = "const",
                 output_type: OutputType = "pil", batch_size: int = 16, **synthesis_kwargs: Any) -> Any:
        """Images for the given seeds; the same seed gives the same image on any device.

        Latents come from one CPU ``torch.Generator`` per seed. ``output_type``: ``pil`` (list of ``PIL.Image``),
        ``np`` (uint8 ``[N, H, W, 3]``) or ``pt`` (float ``[N, 3, H, W]`` in [-1, 1]).
        """
        seed_list = parse_seeds(seeds)
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        outs = []
        for i in range(0, len(seed_list), batch_size):
            z = latents_for_seeds(seed_list[i:i + batch_size], self.z_dim).to(device)
            outs.append(self(z, truncation_psi=truncation, noise_mode=noise_mode, **synthesis_kwargs).float().cpu())
        self.train(was_training)
        return convert_images(torch.cat(outs), output_type)


class LikelihoodModel(PretrainedModel):
    """Base of likelihood models: exact discrete log-probabilities of ``bits``-bit images, and sampling.

    Subclasses implement ``log_prob(images)`` taking uint8 ``[B, C, H, W]`` (values ``0 .. 2**bits - 1``) and
    returning the log-likelihood of each image in nats ``[B]``, and ``sample(n, generator, temperature)`` returning
    uint8 ``[n, C, H, W]``. ``sampling_is_cheap`` tells the trainer whether preview grids at snapshots are affordable.
    """

    kind: ClassVar[str] = "likelihood"
    img_resolution: int
    img_channels: int = 3
    bits: int = 8
    sampling_is_cheap: ClassVar[bool] = True

    def log_prob(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``log_prob`` (so profilers and exporters see the scoring pass as the forward)."""
        return self.log_prob(images)

    def example_inputs(self, batch: int) -> tuple[torch.Tensor]:
        """Seeded random images ``[batch, C, R, R]`` of the model's bit depth, for profiling."""
        shape = (batch, self.img_channels, self.img_resolution, self.img_resolution)
        return (torch.randint(0, 2 ** self.bits, shape, generator=torch.Generator().manual_seed(0), dtype=torch.uint8),)

    def bits_per_dim(self, images: torch.Tensor) -> torch.Tensor:
        """``-log2 p(x) / (C * H * W)`` per image ``[B]`` (float64)."""
        dims = images[0].numel()
        return -self.log_prob(images).double() / (dims * float(np.log(2.0)))

    @torch.no_grad()
    def generate(self, seeds: int | str | Iterable[int], temperature: float = 1.0, output_type: OutputType = "pil",
                 batch_size: int = 16) -> Any:
        """Samples for the given seeds (one CPU ``torch.Generator`` per seed: same image at any batch size)."""
        seed_list = parse_seeds(seeds)
        was_training = self.training
        self.eval()
        outs = [self.sample(1, torch.Generator("cpu").manual_seed(int(s)), temperature=temperature).cpu()
                for s in seed_list]
        self.train(was_training)
        images = torch.cat(outs)
        scale = 255.0 / (2 ** self.bits - 1)
        return convert_images((images.float() * scale) / 127.5 - 1, output_type)


class Translator(PretrainedModel):
    """Base of image-to-image translators: a label map ``int64 [B, H, W]`` (ids ``0 .. num_classes - 1``) to an image
    ``[B, 3, H, W]`` in [-1, 1]. Subclasses implement ``forward(labels)``.

    Translators whose ``input_kind`` is ``"image"`` (CycleGAN's generators) take images instead: float
    ``[B, C, H, W]`` in [-1, 1] (``translate`` also accepts uint8 in 0..255)."""

    kind: ClassVar[str] = "translator"
    num_classes: int
    img_resolution: int
    img_channels: int = 3

    in_channels: int | None = None  # set by translators built for image input (CycleGAN / image-to-image)
    prunable: ClassVar[bool] = False  # declares channel_groups() (leangen.ops.prunable): leangen compress takes it
    size_multiple: int = 1            # input height and width must be multiples of this (2**downsamplings, tile)
    min_input_size: int = 1           # ... and at least this (reflection padding at the coarsest level)

    def check_input_size(self, height: int, width: int) -> None:
        """``ValueError`` for an input of ``height`` x ``width`` this translator cannot map to the same size."""
        m, low = int(self.size_multiple), max(int(self.min_input_size), int(self.size_multiple))
        if height % m or width % m or height < low or width < low:
            raise ValueError(f"a {width}x{height} input; this model needs sides that are multiples of {m}, at least "
                             f"{low}")

    @property
    def input_kind(self) -> str:
        """``"image"`` (images in [-1, 1]) for a translator built with ``in_channels``, else ``"labels"``."""
        return "image" if self.in_channels else "labels"

    def check_labels(self, labels: torch.Tensor) -> None:
        """``ValueError`` for a label map of the wrong shape or with ids outside ``0 .. num_classes - 1``."""
        if labels.dim() != 3 or labels.dtype not in (torch.int64, torch.int32, torch.uint8):
            raise ValueError(f"label maps must be integer [B, H, W], got {labels.dtype} {tuple(labels.shape)}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ValueError(f"label ids must be in 0..{self.num_classes - 1}, got {int(labels.min())}.."
                             f"{int(labels.max())}")

    def example_inputs(self, batch: int) -> tuple[torch.Tensor]:
        """Seeded random label maps ``[batch, R, R]`` (images ``[batch, in_channels, R, R]`` for image input), for
        profiling."""
        res, gen = self.img_resolution, torch.Generator().manual_seed(0)
        if self.input_kind == "image":
            return (torch.randn(batch, int(self.in_channels), res, res, generator=gen),)  # type: ignore[arg-type]
        return (torch.randint(0, self.num_classes, (batch, res, res), generator=gen),)

    def check_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``[B, C, H, W]`` (uint8 0..255 or float in [-1, 1]) as float in [-1, 1] for an image-input
        translator; ``ValueError`` for another shape or channel count."""
        channels = int(getattr(self, "in_channels", None) or 3)
        if images.dim() != 4 or images.shape[1] != channels or images.dtype == torch.bool:
            raise ValueError(f"this translator takes images [B, {channels}, H, W] (uint8, or float in [-1, 1]), got "
                             f"{images.dtype} {tuple(images.shape)}")
        if images.dtype == torch.uint8:
            return images.float() / 127.5 - 1
        if not images.is_floating_point():
            raise ValueError(f"images must be uint8 or float, got {images.dtype}")
        return images.float()

    @torch.no_grad()
    def translate(self, labels: torch.Tensor, output_type: OutputType = "pt", batch_size: int = 16,
                  instances: torch.Tensor | None = None) -> Any:
        """Images for label maps ``[B, H, W]`` (on any device; computed where the model is). ``instances``: optional
        instance ids ``[B, H, W]`` for models with an instance-edge input. For ``input_kind == "image"``, ``labels``
        are images ``[B, C, H, W]`` (uint8, or float in [-1, 1])."""
        if self.input_kind == "image":
            if instances is not None:
                raise ValueError("image-input translators take no instance maps")
            images = self.check_images(labels)
            return self._batched(lambda i: self(images[i:i + batch_size].to(self._device())), len(images),
                                 batch_size, output_type)
        self.check_labels(labels)
        if instances is not None and tuple(instances.shape) != tuple(labels.shape):
            raise ValueError(f"instance maps {tuple(instances.shape)} must match the label maps {tuple(labels.shape)}")
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()

        def extra(i: int) -> dict[str, torch.Tensor]:
            # only models built for instance edges take the argument (subclasses may implement forward(labels))
            return {} if instances is None else {"instances": instances[i:i + batch_size].to(device).long()}

        outs = [self(labels[i:i + batch_size].to(device).long(), **extra(i)).float().cpu()
                for i in range(0, labels.shape[0], batch_size)]
        self.train(was_training)
        return convert_images(torch.cat(outs), output_type)

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def _batched(self, run: Callable[[int], torch.Tensor], n: int, batch_size: int, output_type: OutputType) -> Any:
        """``run(start)`` for every ``batch_size`` chunk of ``n`` inputs, in eval mode, outputs concatenated."""
        was_training = self.training
        self.eval()
        outs = [run(i).float().cpu() for i in range(0, n, batch_size)]
        self.train(was_training)
        return convert_images(torch.cat(outs), output_type)


def convert_images(images: torch.Tensor, output_type: OutputType) -> Any:
    """Float ``[N, 3, H, W]`` in [-1, 1] -> ``pt`` (unchanged), ``np`` (uint8 ``[N, H, W, 3]``) or ``pil`` (list)."""
    if output_type == "pt":
        return images
    arr = to_uint8(images).permute(0, 2, 3, 1).numpy()
    if output_type == "np":
        return arr
    from PIL import Image

    return [Image.fromarray(a) for a in arr]


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """``[-1, 1]`` float images -> uint8 ``[0, 255]`` (StyleGAN quantization: x * 127.5 + 128, clamp, truncate)."""
    return (images.float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def image_grid(images: torch.Tensor, ncols: int | None = None) -> np.ndarray:
    """``[N, 3, H, W]`` in [-1, 1] -> one uint8 ``[rows*H, cols*W, 3]`` grid."""
    n, c, h, w = images.shape
    ncols = ncols or int(np.ceil(np.sqrt(n)))
    nrows = int(np.ceil(n / ncols))
    grid = torch.full((nrows * ncols, c, h, w), 255, dtype=torch.uint8)
    grid[:n] = to_uint8(images)
    grid = grid.reshape(nrows, ncols, c, h, w).permute(0, 3, 1, 4, 2).reshape(nrows * h, ncols * w, c)
    return grid.numpy()
