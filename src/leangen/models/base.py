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
from leangen.utils.files import atomic_path
from leangen.utils.seeds import latents_for_seeds, parse_seeds

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MODEL_TYPES: dict[str, type["PretrainedModel"]] = {}

M = TypeVar("M", bound="PretrainedModel")


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
    config: dict[str, Any]

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save_pretrained(self, directory: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``directory`` (each file replaced atomically)."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous().clone() for k, v in self.state_dict().items()}
        with atomic_path(directory / WEIGHTS_NAME) as tmp:
            save_file(state, str(tmp), metadata={"model_type": self.model_type})
        meta = {"model_type": self.model_type, "config": self.config, "leangen_version": _version()}
        if extra:
            meta.update(extra)
        with atomic_path(directory / CONFIG_NAME) as tmp:
            tmp.write_text(json.dumps(meta, indent=2) + "\n")
        return directory

    @classmethod
    def from_pretrained(cls: type[M], directory: str | os.PathLike, device: str | torch.device = "cpu") -> M:
        """Rebuild a model saved by ``save_pretrained``. Raises ``ValueError`` when the folder holds another model."""
        from safetensors.torch import load_file

        directory = Path(directory)
        cfg_path = directory / CONFIG_NAME
        if not cfg_path.is_file():
            raise FileNotFoundError(f"{directory} is not a saved leangen model (no {CONFIG_NAME})")
        try:
            meta = json.loads(cfg_path.read_text())
            model_type = meta["model_type"]
        except (json.JSONDecodeError, KeyError) as e:
            raise ValueError(f"{cfg_path} is not a leangen model config: {e}") from None
        target = MODEL_TYPES.get(model_type)
        if target is None:
            raise ValueError(f"{directory}: unknown model type {model_type!r} (known: {', '.join(sorted(MODEL_TYPES))})")
        if cls is not PretrainedModel and not issubclass(target, cls):
            raise ValueError(f"{directory} holds a {model_type!r} model, not a {cls.model_type or cls.__name__!r}")
        model = target(**meta["config"])
        weights = directory / WEIGHTS_NAME
        if not weights.is_file():
            raise FileNotFoundError(f"{directory}: missing {WEIGHTS_NAME}")
        state = load_file(str(weights))
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"{weights} does not match a {model_type!r} built from its config: "
                             f"missing {list(missing)[:5]}, unexpected {list(unexpected)[:5]}")
        return model.to(device).eval()  # type: ignore[return-value]


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("leangen")
    except Exception:  # pragma: no cover - running from a source tree
        return "0+unknown"


OutputType = Literal["pil", "pt", "np"]


class StyleGenerator(PretrainedModel):
    """Base of style-based generators (StyleGAN2, CIPS, PixelFolder, StyleNAT).

    Subclasses build ``self.mapping`` through ``_init_mapping`` and implement ``synthesis(ws, noise_mode)`` taking
    ``ws [B, num_ws, w_dim]`` and returning images ``[B, 3, R, R]`` in [-1, 1] (not clamped).
    """

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
        images = torch.cat(outs)
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
