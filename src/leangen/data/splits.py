"""Fixed train/validation splits: membership is a hash of each item's name, so it never depends on the order of
files, on the number of items or on a seed, and adding images to a folder moves none of the old ones across."""
from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np
import torch

from leangen.data.batch import collate

VAL_FRACTION = 0.1


def _bucket(key: str) -> float:
    return int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "big") / 2 ** 64


def split_indices(n: int, names: Sequence[str] | None = None,
                  val_fraction: float = VAL_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """``(train, val)`` index arrays over ``n`` items; an item is in val when the hash of its name (or of its index
    when there are no names) falls below ``val_fraction``. Both sides get at least one item when ``n >= 2``."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    keys = list(names) if names is not None else [str(i) for i in range(n)]
    buckets = np.array([_bucket(k) for k in keys[:n]])
    val = buckets < val_fraction
    if n >= 2 and not val.any():
        val[int(buckets.argmin())] = True
    if n >= 2 and val.all():
        val[int(buckets.argmax())] = False
    return np.flatnonzero(~val), np.flatnonzero(val)


class SplitView(torch.utils.data.Dataset):
    """Items ``indices`` of ``dataset`` under the name ``split``; forwards ``get_batch``, ``fingerprint`` and the
    dataset's other attributes (``resolution``, ``classes``, ``palette``...)."""

    def __init__(self, dataset: Any, indices: np.ndarray, split: str) -> None:
        self.dataset, self.indices, self.split = dataset, torch.as_tensor(indices, dtype=torch.long), split
        self.name = f"{getattr(dataset, 'name', type(dataset).__name__)}"
        names = getattr(dataset, "names", None)
        if names is not None:
            self.names = [names[i] for i in self.indices.tolist()]

    def __len__(self) -> int:
        return int(self.indices.numel())

    def __getitem__(self, i: int) -> Any:
        return self.dataset[int(self.indices[i])]

    def get_batch(self, indices: Any) -> Any:
        idx = self.indices[torch.as_tensor(indices, dtype=torch.long).reshape(-1)]
        if hasattr(self.dataset, "get_batch"):
            return self.dataset.get_batch(idx)
        items = [self.dataset[int(i)] for i in idx]
        batch = collate(items)
        return batch.image if batch.condition is None and batch.image_b is None else batch.as_dict()

    def fingerprint(self) -> str:
        base = self.dataset.fingerprint() if hasattr(self.dataset, "fingerprint") else type(self.dataset).__name__
        ids = hashlib.sha1(self.indices.numpy().tobytes()).hexdigest()[:8]
        return f"{base}-{self.split}{len(self)}-{ids}"

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes not set above: forward to the wrapped dataset.
        if name in ("dataset", "indices", "split") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.dataset, name)


def train_val(dataset: Any, val_fraction: float = VAL_FRACTION) -> tuple[SplitView, SplitView]:
    """The fixed ``(train, val)`` views of ``dataset`` (names from ``dataset.names`` when it has them)."""
    n = len(dataset)
    if getattr(dataset, "xflip", False):
        raise ValueError("split the dataset before mirroring it (xflip=False); the trainer mirrors with --mirror")
    tr, va = split_indices(n, getattr(dataset, "names", None), val_fraction)
    return SplitView(dataset, tr, "train"), SplitView(dataset, va, "val")
