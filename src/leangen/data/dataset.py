"""Image datasets for training and evaluation: StyleGAN-format zips, plain folders and built-in names.

``ImageDataset[i]`` is a ``uint8`` tensor ``[3, R, R]`` in ``0..255`` (RGB; alpha composited on white). Small datasets
are decoded once into a single ``uint8`` tensor so CPU training does not pay PNG decoding every step.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from leangen.data._images import ImageSource, ResizeFilter, crop_resize, parse_labels

# Decode into memory when the uint8 pixels take at most this many bytes (70k images at 64^2 = 0.86 GB fit).
MEMORY_CACHE_LIMIT = 1 << 30

BUILTIN_DATASETS: tuple[str, ...] = ("openmoji",)


class ImageDataset(torch.utils.data.Dataset):
    """Square RGB images from a StyleGAN-style zip (+ optional ``dataset.json``) or a folder (searched recursively).

    Args:
        path: a ``.zip`` or a folder of png/jpg/jpeg/webp/bmp/gif/tif images; names are sorted.
        resolution: output side R. Images of another size are centre-cropped and resized (``resize_filter``).
            ``None`` uses the images' own size, which must be the same for all (``ValueError`` otherwise);
            non-square images are centre-cropped to their shorter side.
        xflip: append a horizontally mirrored copy of every image (indices ``N..2N-1``), doubling the length.
        max_size: keep a fixed pseudo-random subset (``random_seed``) of this many images, in name order.
        cache_in_memory: decode everything once into one ``uint8`` tensor when it takes <= ``MEMORY_CACHE_LIMIT``.

    Items are ``uint8`` tensors ``[3, R, R]``; labels (``dataset.json`` ``labels``, may be null) are in ``.labels``.
    """

    num_channels: int = 3  # every image is converted to RGB

    def __init__(self, path: str | os.PathLike, resolution: int | None = None, xflip: bool = False,
                 max_size: int | None = None, cache_in_memory: bool = True, *,
                 resize_filter: ResizeFilter = "lanczos", random_seed: int = 0) -> None:
        if resolution is not None and (isinstance(resolution, bool) or not isinstance(resolution, int)
                                       or resolution < 1):
            raise ValueError(f"resolution must be a positive int or None, got {resolution!r}")
        if max_size is not None and max_size < 1:
            raise ValueError(f"max_size must be >= 1, got {max_size}")
        self.path = Path(path)
        self._source = ImageSource(self.path)
        names = self._source.names
        if not names:
            raise ValueError(f"no images found in {self.path}")
        if max_size is not None and max_size < len(names):
            keep = np.sort(np.random.RandomState(random_seed).choice(len(names), max_size, replace=False))
            names = [names[i] for i in keep]
        self.names: list[str] = names
        self.xflip = bool(xflip)
        self.resize_filter: ResizeFilter = resize_filter
        self.name: str = self.path.stem if self._source.kind == "zip" else self.path.name
        self._file_sizes = [self._source.file_size(n) for n in names]

        doc = self._source.read_json()
        self.metadata: dict[str, Any] = dict((doc or {}).get("meta") or {})
        raw_labels = parse_labels(doc, names, str(self.path))
        self._raw_labels = None if raw_labels is None else torch.from_numpy(raw_labels)

        self._resolution = resolution if resolution is not None else self._common_size()
        self._cache: torch.Tensor | None = None
        if cache_in_memory and len(names) * 3 * self._resolution ** 2 <= MEMORY_CACHE_LIMIT:
            self._cache = self._decode_all()
            self._source.close()  # every pixel is in memory now

    # -- construction helpers ---------------------------------------------------------------------------------
    def _common_size(self) -> int:
        """Side of the images when all share one size (read from headers only); ValueError naming two that differ."""
        first_name, first_size = None, None
        for name in self.names:
            size, _ = self._source.probe(name)
            if first_size is None:
                first_name, first_size = name, size
            elif size != first_size:
                raise ValueError(
                    f"images in {self.path} have different sizes: {first_name!r} is {first_size[0]}x{first_size[1]}, "
                    f"{name!r} is {size[0]}x{size[1]}; pass resolution=R (--resolution) to centre-crop and resize "
                    "them all to R x R")
        assert first_size is not None
        return min(first_size)

    def _load_raw(self, raw_idx: int) -> torch.Tensor:
        img = crop_resize(self._source.load_rgb(self.names[raw_idx]), self._resolution, self.resize_filter)
        return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()

    def _decode_all(self) -> torch.Tensor:
        r = self._resolution
        out = torch.empty((len(self.names), 3, r, r), dtype=torch.uint8)
        for i in range(len(self.names)):
            out[i] = self._load_raw(i)
        return out

    # -- Dataset API ------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.names) * (2 if self.xflip else 1)

    def _raw_index(self, idx: int) -> tuple[int, bool]:
        n = len(self)
        if idx < 0:
            idx += n
        if not 0 <= idx < n:
            raise IndexError(f"index {idx} out of range for dataset of length {n}")
        return idx % len(self.names), idx >= len(self.names)

    def __getitem__(self, idx: int) -> torch.Tensor:
        """Image ``idx`` as ``uint8 [3, R, R]`` (indices ``>= N`` are the mirrored copies when ``xflip``)."""
        raw, flip = self._raw_index(int(idx))
        img = self._cache[raw].clone() if self._cache is not None else self._load_raw(raw)
        return img.flip(-1) if flip else img

    def get_batch(self, indices: torch.Tensor | list[int] | np.ndarray) -> torch.Tensor:
        """Images at ``indices`` stacked as ``uint8 [B, 3, R, R]``; one gather when the data is in memory."""
        idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        n = len(self.names)
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= len(self)):
            raise IndexError(f"batch indices must be in 0..{len(self) - 1}")
        if self._cache is None:
            return torch.stack([self[int(i)] for i in idx]) if idx.numel() else \
                torch.empty((0, 3, self._resolution, self._resolution), dtype=torch.uint8)
        out = self._cache.index_select(0, idx % n)
        flip = idx >= n
        if bool(flip.any()):
            out[flip] = out[flip].flip(-1)
        return out

    # -- properties -------------------------------------------------------------------------------------------
    @property
    def resolution(self) -> int:
        """Side R of the square images."""
        return self._resolution

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (3, self._resolution, self._resolution)

    @property
    def in_memory(self) -> bool:
        return self._cache is not None

    @property
    def has_labels(self) -> bool:
        return self._raw_labels is not None

    @property
    def labels(self) -> torch.Tensor | None:
        """One label per item (``len(self)``): int64 ``[N]`` class indices or float32 ``[N, D]``; None if unlabeled."""
        if self._raw_labels is None:
            return None
        return self._raw_labels.repeat(2, *([1] * (self._raw_labels.dim() - 1))) if self.xflip else self._raw_labels

    @property
    def label_dim(self) -> int:
        """Number of classes for integer labels, vector length for float labels, 0 without labels."""
        if self._raw_labels is None:
            return 0
        if self._raw_labels.dtype == torch.int64:
            return int(self._raw_labels.max()) + 1
        return int(self._raw_labels.shape[1]) if self._raw_labels.dim() == 2 else 1

    def get_label(self, idx: int) -> torch.Tensor | None:
        """Label of item ``idx`` (mirrored copies share their original's label); None if unlabeled."""
        if self._raw_labels is None:
            return None
        return self._raw_labels[self._raw_index(int(idx))[0]]

    @property
    def attribution(self) -> str | None:
        """Attribution required by the data's licence (e.g. OpenMoji's CC BY-SA), from ``dataset.json``."""
        return self.metadata.get("attribution")

    def fingerprint(self) -> str:
        """Content hash keying caches of reference statistics (24 hex digits).

        Hashes the decoded uint8 pixels when they are in memory (cheap: one pass over the tensor), else the image
        files' bytes, together with what turns files into pixels (resolution, filter, xflip). Independent of where
        the dataset lives, of file names and of dates; changes whenever any image's content does, even when a file
        is replaced by another of the same name and size. Computed once per dataset object (~1 s per GB).
        """
        cached = getattr(self, "_fingerprint", None)
        if cached is not None:
            return cached
        spec = {"v": 2, "content": "pixels" if self._cache is not None else "files", "num_images": len(self.names),
                "resolution": self._resolution, "resize_filter": self.resize_filter, "xflip": self.xflip}
        h = hashlib.blake2b(json.dumps(spec, sort_keys=True).encode(), digest_size=16)
        if self._cache is not None:
            h.update(self._cache.contiguous().numpy())  # the buffer itself: no copy
        else:
            for name in self.names:
                data = self._source.read_bytes(name)
                h.update(len(data).to_bytes(8, "little"))  # length-prefixed: file boundaries are part of the content
                h.update(data)
        self._fingerprint: str = h.hexdigest()[:24]
        return self._fingerprint

    def close(self) -> None:
        """Release the open zip handle (reopened on demand)."""
        self._source.close()

    def __repr__(self) -> str:
        return (f"ImageDataset(name={self.name!r}, len={len(self)}, resolution={self._resolution}, "
                f"xflip={self.xflip}, labels={self.has_labels}, in_memory={self.in_memory})")


def open_dataset(source: str | os.PathLike, resolution: int | None = None, *,
                 cache_dir: str | os.PathLike | None = None, **kwargs: Any) -> ImageDataset:
    """Open a dataset by path or built-in name.

    ``source`` is a zip, a folder, ``'openmoji'`` (``resolution`` required; the cached zip is rendered on first
    use) or ``'openmoji-<R>'``. Extra keyword arguments go to ``ImageDataset``.
    """
    path = Path(source).expanduser()
    if path.exists():
        return ImageDataset(path, resolution, **kwargs)
    m = re.fullmatch(r"openmoji(?:-(\d+))?", str(source))
    if m is not None:
        from leangen.data.create import openmoji_zip

        res = int(m.group(1)) if m.group(1) else resolution
        if res is None:
            raise ValueError("the built-in 'openmoji' dataset needs a resolution, e.g. open_dataset('openmoji', 64)")
        if resolution is not None and res != resolution:
            raise ValueError(f"{source!r} conflicts with resolution={resolution}")
        return ImageDataset(openmoji_zip(res, cache_dir=cache_dir), res, **kwargs)
    raise FileNotFoundError(f"no dataset at {str(source)!r}: expected a .zip, a folder, or a built-in name "
                            f"({', '.join(BUILTIN_DATASETS)}, e.g. 'openmoji' with a resolution)")
