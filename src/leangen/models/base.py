"""The model contract: the three kinds of model leangen serves and what each declares.

``PretrainedModel`` (``leangen.models.pretrained``) declares what every model is and offers, each capability as a
class attribute with a default; ``StyleGenerator`` (z -> image), ``LikelihoodModel`` (image <-> log-probability) and
``Translator`` (label map or image -> image) add their kind's inputs and methods. Callers ask these declarations and
``model_task(model)``; they never probe with ``hasattr``. The names below are importable from here as before.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, ClassVar, Iterable

import numpy as np
import torch

from leangen.models.images import OutputType, convert_images, image_grid, to_uint8
from leangen.models.pretrained import (CONFIG_NAME, KIND_TASKS, MODEL_TYPES, WEIGHTS_NAME, ModelLoadError,
                                       PretrainedModel, check_weights, load_weights, model_kind, model_task,
                                       read_weights, register_model)
from leangen.ops.mapping import MappingNetwork
from leangen.ops.modulated import NoiseMode
from leangen.utils.seeds import latents_for_seeds, parse_seeds

__all__ = ["CONFIG_NAME", "Discriminator", "KIND_TASKS", "LikelihoodModel", "MODEL_TYPES", "ModelLoadError",
           "OutputType", "PretrainedModel", "StyleGenerator", "Translator", "WEIGHTS_NAME", "check_weights",
           "convert_images", "image_grid", "load_weights", "model_kind", "model_task", "read_weights", "register_model",
           "to_uint8"]


class StyleGenerator(PretrainedModel):
    """Base of style-based generators (StyleGAN2, CIPS, PixelFolder).

    Subclasses build ``self.mapping`` through ``_init_mapping`` and implement ``synthesis(ws, noise_mode)`` taking
    ``ws [B, num_ws, w_dim]`` and returning images ``[B, 3, R, R]`` in [-1, 1] (not clamped).
    """

    kind: ClassVar[str] = "generator"
    input_kind: ClassVar[str] = "latent"
    z_dim: int
    w_dim: int
    num_ws: int
    img_resolution: int
    img_channels: int = 3

    def _init_mapping(self, z_dim: int, w_dim: int, num_layers: int, lr_mul: float, num_ws: int, resolution: int) -> None:
        self.z_dim, self.w_dim, self.num_ws, self.img_resolution = z_dim, w_dim, num_ws, resolution
        self.mapping = MappingNetwork(z_dim, w_dim, num_layers, lr_mul)

    def example_inputs(self, batch: int) -> tuple[torch.Tensor]:
        """Seeded latents ``z [batch, z_dim]`` (drawn on the CPU)."""
        return (torch.randn(batch, self.z_dim, generator=torch.Generator("cpu").manual_seed(0)),)

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
    input_kind: ClassVar[str] = "image"
    img_resolution: int
    img_channels: int = 3
    bits: int = 8
    sampling_is_cheap: ClassVar[bool] = True

    def log_prob(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def training_log_prob(self, images: torch.Tensor) -> torch.Tensor:
        """The log-likelihood the trainer maximizes (default ``log_prob``; a model may train on a cheaper bound)."""
        return self.log_prob(images)

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


class Discriminator(PretrainedModel):
    """Base of discriminators: images ``[B, C, R, R]`` in [-1, 1] -> logits; those that also judge the label map
    (``takes_labels``) take ``(labels [B, R, R] | None, image)``, labels None when built with ``num_classes=0``.

    Fully convolutional ones have no ``img_resolution``: their ``example_inputs`` are ``example_size`` pixels."""

    kind: ClassVar[str] = "discriminator"
    input_kind: ClassVar[str] = "image"
    takes_labels: ClassVar[bool] = False
    example_size: ClassVar[int] = 64

    def example_inputs(self, batch: int) -> tuple[Any, ...]:
        """Seeded images ``[batch, C, R, R]`` uniform in [-1, 1] (after seeded label maps for ``takes_labels``)."""
        res, gen = int(self.img_resolution or self.example_size), torch.Generator().manual_seed(0)
        image = torch.rand(batch, self.img_channels, res, res, generator=gen) * 2 - 1
        if not self.takes_labels:
            return (image,)
        labels = torch.randint(0, self.num_classes, (batch, res, res), generator=gen) if self.num_classes else None
        return labels, image


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
    size_multiple: int = 1            # input height and width must be multiples of this (2**downsamplings, tile)
    min_input_size: int = 1           # ... and at least this (reflection padding at the coarsest level)

    def check_input_size(self, height: int, width: int) -> None:
        """``ValueError`` for an input of ``height`` x ``width`` this translator cannot map to the same size."""
        m, low = int(self.size_multiple), max(int(self.min_input_size), int(self.size_multiple))
        if height % m or width % m or height < low or width < low:
            raise ValueError(f"a {width}x{height} input; this model needs sides that are multiples of {m}, at least "
                             f"{low}")

    @property
    def input_kind(self) -> str:  # type: ignore[override]
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
        channels = int(self.in_channels or 3)
        if images.dim() != 4 or images.shape[1] != channels or images.dtype == torch.bool:
            raise ValueError(f"this translator takes images [B, {channels}, H, W] (uint8, or float in [-1, 1]), got "
                             f"{images.dtype} {tuple(images.shape)}")
        if images.dtype == torch.uint8:
            return images.float() / 127.5 - 1
        if not images.is_floating_point():
            raise ValueError(f"images must be uint8 or float, got {images.dtype}")
        return images.float()

    @torch.no_grad()
    def translate(self, inputs: torch.Tensor | None = None, output_type: OutputType = "pt", batch_size: int = 16,
                  instances: torch.Tensor | None = None, *, labels: torch.Tensor | None = None) -> Any:
        """Images for ``inputs``: label maps ``[B, H, W]``, or images ``[B, C, H, W]`` (uint8, or float in [-1, 1])
        for ``input_kind == "image"`` (on any device; computed where the model is). ``instances``: optional instance
        ids ``[B, H, W]`` for models with an instance-edge input. ``labels=`` is the old name of ``inputs``."""
        if labels is not None:
            if inputs is not None:
                raise TypeError("translate() takes inputs or its old name labels=, not both")
            warnings.warn("translate(labels=...) is deprecated: the argument is named inputs (label maps or images)",
                          DeprecationWarning, stacklevel=3)  # 3: past torch.no_grad's wrapper
            inputs = labels
        if inputs is None:
            raise TypeError("translate() needs inputs (label maps [B, H, W] or images [B, C, H, W])")
        if self.input_kind == "image":
            if instances is not None:
                raise ValueError("image-input translators take no instance maps")
            images = self.check_images(inputs)
            return self._batched(lambda i: self(images[i:i + batch_size].to(self._device())), len(images),
                                 batch_size, output_type)
        self.check_labels(inputs)
        if instances is not None and tuple(instances.shape) != tuple(inputs.shape):
            raise ValueError(f"instance maps {tuple(instances.shape)} must match the label maps {tuple(inputs.shape)}")
        device = self._device()

        def run(i: int) -> torch.Tensor:
            # only models built for instance edges take the argument (subclasses may implement forward(labels))
            extra = {} if instances is None else {"instances": instances[i:i + batch_size].to(device).long()}
            return self(inputs[i:i + batch_size].to(device).long(), **extra)

        return self._batched(run, inputs.shape[0], batch_size, output_type)

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def _batched(self, run: Callable[[int], torch.Tensor], n: int, batch_size: int, output_type: OutputType) -> Any:
        """``run(start)`` for every ``batch_size`` chunk of ``n`` inputs, in eval mode, outputs concatenated."""
        was_training = self.training
        self.eval()
        outs = [run(i).float().cpu() for i in range(0, n, batch_size)]
        self.train(was_training)
        return convert_images(torch.cat(outs), output_type)
