"""Reading evaluation data in fixed order: uint8 images, or (image, label map) pairs, batch by batch.

Items may be uint8 images ``[3, H, W]``, ``(image, label)`` tuples or ``{"image", "condition"}`` dicts (see
``leangen.data.batch``); ``get_batch(indices)`` is used when the dataset has it (one gather from memory).
"""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch

from leangen.data.batch import Batch, collate


def num_unflipped(dataset: Any) -> int:
    """Items without x-flipped copies: the protocols use no flips, and leangen's ``ImageDataset(xflip=True)`` appends
    the mirrored copies at N..2N-1."""
    n = len(dataset)
    return n // 2 if getattr(dataset, "xflip", False) else n


def data_fingerprint(dataset: Any) -> str | None:
    """``dataset.fingerprint()`` (a content hash for leangen's datasets), or None when it has none."""
    fp = getattr(dataset, "fingerprint", None)
    return str(fp()) if callable(fp) else None


def _as_batch(raw: Any) -> Batch:
    try:
        batch = collate(raw)
    except (TypeError, KeyError, RuntimeError) as e:
        raise TypeError(f"dataset items must be uint8 [3, H, W] images, (image, label) tuples or "
                        f"{{'image', 'condition'}} dicts ({e})") from None
    img = batch.image
    if not isinstance(img, torch.Tensor) or img.dtype != torch.uint8 or img.dim() != 4:
        got = f"{img.dtype} {tuple(img.shape)}" if isinstance(img, torch.Tensor) else type(img).__name__
        raise TypeError(f"dataset images must be uint8 [B, 3, H, W] in 0..255, got {got}")
    return batch


def iter_batches(dataset: Any, indices: np.ndarray, batch_size: int, num_workers: int = 0) -> Iterator[Batch]:
    """``Batch`` es (uint8 images, optional int64 label maps) of ``dataset[indices]``, in order."""
    get_batch = getattr(dataset, "get_batch", None)
    if callable(get_batch):
        for i in range(0, len(indices), batch_size):
            yield _as_batch(get_batch(indices[i:i + batch_size]))
        return
    subset = torch.utils.data.Subset(dataset, [int(i) for i in indices])
    loader = torch.utils.data.DataLoader(subset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                                         collate_fn=list)
    for items in loader:
        yield _as_batch(items)


def iter_images(dataset: Any, indices: np.ndarray, batch_size: int, num_workers: int = 0) -> Iterator[torch.Tensor]:
    """uint8 ``[B, 3, H, W]`` images of ``dataset[indices]``, in order (label maps, if any, dropped)."""
    for batch in iter_batches(dataset, indices, batch_size, num_workers):
        yield batch.image


def iter_pairs(dataset: Any, indices: np.ndarray, batch_size: int,
               num_workers: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(label maps int64 [B, H, W], targets uint8 [B, 3, H, W])`` of paired ``dataset[indices]``, in order."""
    for batch in iter_batches(dataset, indices, batch_size, num_workers):
        if batch.condition is None:
            raise TypeError("paired metrics need label map -> image pairs ({'image', 'condition'} items); "
                            "this dataset has images only")
        yield batch.condition.long(), batch.image


def is_paired(dataset: Any) -> bool:
    """Whether ``dataset``'s items carry label maps."""
    if dataset is None or len(dataset) == 0:
        return False
    item = dataset[0]
    return isinstance(item, dict) and "condition" in item


__all__ = ["num_unflipped", "data_fingerprint", "iter_batches", "iter_images", "iter_pairs", "is_paired"]
