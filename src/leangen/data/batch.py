"""The batch record every objective receives, and how dataset items become one.

Dataset items come in three shapes, all accepted everywhere:

- a uint8 image tensor ``[C, H, W]`` (unconditional and likelihood data);
- a tuple ``(image, label)`` (class-labelled image datasets; the label is not used by the trainer yet);
- a dict ``{"image": uint8 [C, H, W], "condition": int64 [H, W]}`` (paired data: label map -> photo), optionally
  with ``"instances": int64 [H, W]`` (instance ids per pixel; models turn them into the instance-edge map);
- a dict ``{"image": uint8 [C, H, W], "image_b": uint8 [C, H, W]}`` (unpaired data: an image of domain A and one
  of domain B drawn independently of it, ``leangen.data.unpaired``).

Images stay uint8 until an objective asks for floats: a likelihood model needs the exact integer values, a GAN
wants ``[-1, 1]``. Float image datasets (tests, in-memory tensors) are taken to be in ``[-1, 1]`` already.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch


@dataclass
class Batch:
    """One batch. ``image``: uint8 ``[B, C, H, W]`` in 0..255 (or float in [-1, 1]); ``condition``: int64 label
    map ``[B, H, W]`` for paired data, else None; ``instances``: int64 instance ids ``[B, H, W]`` when the paired
    data has instance maps, else None; ``image_b``: the domain-B images of unpaired data (``image`` holds domain A),
    like ``image``, else None."""

    image: torch.Tensor
    condition: torch.Tensor | None = None
    instances: torch.Tensor | None = None
    image_b: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.image.shape[0])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device, non_blocking=non_blocking)

        return Batch(self.image.to(device, non_blocking=non_blocking), move(self.condition), move(self.instances),
                     move(self.image_b))

    def pin_memory(self) -> "Batch":
        """This batch in page-locked host memory (for asynchronous copies to a CUDA device)."""
        def pin(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.pin_memory()

        return Batch(self.image.pin_memory(), pin(self.condition), pin(self.instances), pin(self.image_b))

    @property
    def image_float(self) -> torch.Tensor:
        """``image`` as float32 in [-1, 1]."""
        return _as_float(self.image)

    @property
    def image_b_float(self) -> torch.Tensor:
        """``image_b`` (unpaired data's domain B) as float32 in [-1, 1]."""
        if self.image_b is None:
            raise ValueError("this batch has no domain-B images (image_b): it is not from an unpaired dataset")
        return _as_float(self.image_b)

    @property
    def image_uint8(self) -> torch.Tensor:
        """``image`` as uint8 in 0..255 (float images quantized as saved PNGs are)."""
        if self.image.dtype == torch.uint8:
            return self.image
        return (self.image.float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)

    def flip_where(self, mask: torch.Tensor) -> "Batch":
        """Mirror (x-flip) the items where ``mask [B]`` is true: image, label map, instance map and domain-B image
        together."""
        if not bool(mask.any()):
            return self

        def flip(t: torch.Tensor | None) -> torch.Tensor | None:
            if t is None:
                return None
            t = t.clone()
            t[mask] = t[mask].flip(-1)
            return t

        return Batch(flip(self.image), flip(self.condition), flip(self.instances),  # type: ignore[arg-type]
                     flip(self.image_b))

    def select(self, index: slice | torch.Tensor) -> "Batch":
        def pick(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[index]

        return Batch(self.image[index], pick(self.condition), pick(self.instances), pick(self.image_b))

    def as_dict(self) -> dict[str, torch.Tensor]:
        """The dict item form (``image``; ``condition``, ``instances`` and ``image_b`` when present)."""
        out = {"image": self.image}
        if self.condition is not None:
            out["condition"] = self.condition
        if self.instances is not None:
            out["instances"] = self.instances
        if self.image_b is not None:
            out["image_b"] = self.image_b
        return out


def _as_float(image: torch.Tensor) -> torch.Tensor:
    if image.dtype == torch.uint8:
        return image.to(torch.float32) / 127.5 - 1
    return image.to(torch.float32)


def item_image(item: Any) -> torch.Tensor:
    """The image of one dataset item, whatever its shape (see the module docstring)."""
    if isinstance(item, dict):
        return item["image"]
    return item[0] if isinstance(item, (tuple, list)) else item


def collate(items: Sequence[Any] | Any) -> Batch:
    """Items (or a ``get_batch`` result: a stacked tensor, a tuple or a dict) -> ``Batch``."""
    if isinstance(items, torch.Tensor):
        return Batch(items)
    if isinstance(items, dict):
        return Batch(items["image"], items.get("condition"), items.get("instances"), items.get("image_b"))
    if isinstance(items, tuple) and len(items) == 2 and isinstance(items[0], torch.Tensor) and items[0].dim() == 4:
        return Batch(items[0])  # (images, labels) from a labelled get_batch
    items = list(items)
    if items and isinstance(items[0], dict):
        def stack(key: str) -> torch.Tensor | None:
            parts = [it.get(key) for it in items]
            return None if parts[0] is None else torch.stack(parts)  # type: ignore[arg-type]

        return Batch(torch.stack([it["image"] for it in items]), stack("condition"), stack("instances"),
                     stack("image_b"))
    return Batch(torch.stack([item_image(it) for it in items]))
