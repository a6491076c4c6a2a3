"""Paired data (label map -> image) and the built-in ``openmoji-seg`` set.

``PairedDataset`` holds everything in memory: images uint8 ``[N, 3, H, W]`` and label maps int64 ``[N, H, W]``
with ids in ``0 .. num_classes - 1``, optionally instance maps int64 ``[N, H, W]`` (any integer id per object; only
where ids change matters: models see the instance-edge map). Items are ``{"image": ..., "condition": ...}`` dicts,
plus ``"instances"`` when there are instance maps (see ``leangen.data.batch``).

``openmoji-seg`` is a minimal paired set made from the OpenMoji glyphs with no download: the label of a pixel is the
nearest of ``OPENMOJI_SEG_CLASSES`` colour families (background white, outline black, grey, red, orange/yellow,
green, blue, purple/pink, skin/brown) in RGB. OpenMoji draws with a small flat palette, so most pixels sit on a
family colour; anti-aliased edges take the nearest one. (The font's CPAL palette has 29 distinct opaque colours;
the classes stay these 9 families, which other presets and tests build on.)

``openmoji-edges`` pairs the boundary map of those classes (class 1 where a 4-neighbour has another class, class 0
elsewhere) with the glyph: edges -> image. Both built-ins split train/validation like every paired set (fixed
90/10 by name, ``leangen.data.splits``). On-disk paired folders: ``leangen.data.paired_folders``.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

# (name, representative RGB) per class; the ids are the list positions.
OPENMOJI_SEG_CLASSES: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("background", (255, 255, 255)),
    ("outline", (0, 0, 0)),
    ("grey", (155, 155, 154)),
    ("red", (213, 47, 39)),
    ("orange-yellow", (246, 190, 45)),
    ("green", (92, 158, 49)),
    ("blue", (97, 178, 228)),
    ("purple-pink", (178, 103, 187)),
    ("skin-brown", (196, 141, 100)),
)


class PairedDataset(torch.utils.data.Dataset):
    """In-memory pairs. ``images`` uint8 ``[N, 3, H, W]``; ``labels`` integer ``[N, H, W]`` (class ids);
    ``instances`` optional integer ``[N, H, W]`` (instance ids)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, names: list[str] | None = None,
                 classes: list[str] | None = None, palette: list[tuple[int, int, int]] | None = None,
                 name: str = "pairs", metadata: dict[str, Any] | None = None,
                 instances: torch.Tensor | None = None) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be uint8 [N, 3, H, W], got {images.dtype} {tuple(images.shape)}")
        if labels.dim() != 3 or labels.shape[0] != images.shape[0] or labels.shape[1:] != images.shape[2:]:
            raise ValueError(f"labels must be [N, H, W] matching images {tuple(images.shape)}, got "
                             f"{tuple(labels.shape)}")
        if instances is not None and tuple(instances.shape) != tuple(labels.shape):
            raise ValueError(f"instance maps must be [N, H, W] matching the labels {tuple(labels.shape)}, got "
                             f"{tuple(instances.shape)}")
        self.images, self.labels = images.contiguous(), labels.long().contiguous()
        self.instances = None if instances is None else instances.long().contiguous()
        self.names = list(names) if names is not None else [f"{i:08d}" for i in range(len(images))]
        self.num_classes = len(classes) if classes else int(self.labels.max()) + 1
        if int(self.labels.min()) < 0 or int(self.labels.max()) >= self.num_classes:
            raise ValueError(f"label ids must be in 0..{self.num_classes - 1}")
        self.classes = list(classes) if classes else [str(i) for i in range(self.num_classes)]
        self.palette = [tuple(c) for c in palette] if palette else None
        self.name = name
        self.metadata = dict(metadata or {})

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = {"image": self.images[i], "condition": self.labels[i]}
        if self.instances is not None:
            item["instances"] = self.instances[i]
        return item

    def get_batch(self, indices: Any) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        out = {"image": self.images.index_select(0, idx), "condition": self.labels.index_select(0, idx)}
        if self.instances is not None:
            out["instances"] = self.instances.index_select(0, idx)
        return out

    @property
    def resolution(self) -> int:
        return int(self.images.shape[-1])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def fingerprint(self) -> str:
        """Hash of the pixels and labels themselves (content, not names)."""
        h = hashlib.sha256()
        h.update(self.images.numpy().tobytes())
        h.update(self.labels.numpy().astype(np.int16).tobytes())
        if self.instances is not None:  # absent instance maps leave the old fingerprints unchanged
            h.update(self.instances.numpy().astype(np.int64).tobytes())
        return h.hexdigest()[:24]

    def colorize(self, labels: torch.Tensor) -> torch.Tensor:
        """Label maps ``[B, H, W]`` -> uint8 RGB ``[B, 3, H, W]`` with the palette (or evenly spaced greys)."""
        return colorize_labels(labels, self.palette, self.num_classes)


def colorize_labels(labels: torch.Tensor, palette: list[tuple[int, int, int]] | None, num_classes: int) -> torch.Tensor:
    """Label maps ``[B, H, W]`` -> uint8 RGB ``[B, 3, H, W]``."""
    if palette is None:
        grey = torch.linspace(0, 255, max(num_classes, 2)).round().to(torch.uint8)
        table = grey[:, None].expand(-1, 3)
    else:
        table = torch.tensor(palette, dtype=torch.uint8)
    return table[labels.long().clamp(0, len(table) - 1)].permute(0, 3, 1, 2).contiguous()


def nearest_class(images: torch.Tensor, palette: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """uint8 ``[N, 3, H, W]`` -> int64 ``[N, H, W]``: index of the nearest palette colour ``[K, 3]`` (squared RGB)."""
    out = torch.empty((images.shape[0], *images.shape[2:]), dtype=torch.long)
    pal = palette.float()
    for i in range(0, images.shape[0], chunk):
        x = images[i:i + chunk].float().permute(0, 2, 3, 1)          # [n, H, W, 3]
        d = (x.unsqueeze(-2) - pal).square().sum(-1)                 # [n, H, W, K]
        out[i:i + chunk] = d.argmin(-1)
    return out


def openmoji_seg(resolution: int, *, max_images: int | None = None,
                 cache_dir: str | os.PathLike | None = None) -> PairedDataset:
    """The built-in ``openmoji-seg`` pairs at ``resolution``: colour-family label map -> glyph (see module doc)."""
    from leangen.data.dataset import ImageDataset
    from leangen.data.create import openmoji_zip

    glyphs = ImageDataset(openmoji_zip(resolution, cache_dir=cache_dir, max_images=max_images), resolution)
    images = glyphs.get_batch(torch.arange(len(glyphs.names)))
    palette = [rgb for _, rgb in OPENMOJI_SEG_CLASSES]
    labels = nearest_class(images, torch.tensor(palette))
    meta = dict(glyphs.metadata, paired="openmoji-seg: nearest colour family per pixel")
    suffix = f"-n{max_images}" if max_images is not None else ""
    return PairedDataset(images, labels, names=list(glyphs.names), classes=[n for n, _ in OPENMOJI_SEG_CLASSES],
                         palette=palette, name=f"openmoji-seg-{resolution}{suffix}", metadata=meta)


def openmoji_edges(resolution: int, *, max_images: int | None = None,
                   cache_dir: str | os.PathLike | None = None) -> PairedDataset:
    """The built-in ``openmoji-edges`` pairs: the class-boundary map of ``openmoji-seg`` (0 background, 1 edge) ->
    glyph."""
    from leangen.data.label_maps import instance_edges

    seg = openmoji_seg(resolution, max_images=max_images, cache_dir=cache_dir)
    edges = instance_edges(seg.labels)[:, 0].long()
    suffix = f"-n{max_images}" if max_images is not None else ""
    meta = dict(seg.metadata, paired="openmoji-edges: boundaries of the openmoji-seg colour classes")
    return PairedDataset(seg.images, edges, names=seg.names, classes=["background", "edge"],
                         palette=[(255, 255, 255), (0, 0, 0)], name=f"openmoji-edges-{resolution}{suffix}",
                         metadata=meta)


def label_map_files(path: Path) -> list[Path]:
    """``path`` itself, or every ``.png`` in the folder ``path`` (sorted); ``ValueError`` when there is none."""
    files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".png") if path.is_dir() else [path]
    if not files:
        raise ValueError(f"no .png label maps in {path}")
    return files


def read_label_map(file: Path) -> np.ndarray:
    """One indexed (P) or greyscale (L, I) PNG -> int64 ``[H, W]`` class ids; ``ValueError`` naming the file for
    colour images and unreadable files."""
    from leangen.data._images import open_image, read_image

    with open_image(file) as im:  # the header first: size, pixel count (decompression bombs) and mode
        if im.mode not in ("P", "L", "I", "I;16"):
            raise ValueError(f"{file}: a {im.mode} image; label maps are indexed (P) or greyscale (L, 16-bit I;16) "
                             f"PNGs whose pixel values are class ids")
    return read_image(file, dtype=np.int64)


def read_label_maps(path: Path) -> tuple[torch.Tensor, list[str]]:
    """Indexed or greyscale PNG(s) (a file or a folder) -> int64 ``[N, H, W]`` class ids and their names;
    ``ValueError`` naming the file for colour images or maps of different sizes."""
    files = label_map_files(path)
    maps = []
    for f in files:
        maps.append(read_label_map(f))
        if maps[-1].shape != maps[0].shape:
            raise ValueError(f"{f} is {maps[-1].shape[1]}x{maps[-1].shape[0]} but {files[0]} is "
                             f"{maps[0].shape[1]}x{maps[0].shape[0]}; give label maps of one size")
    return torch.from_numpy(np.stack(maps)), [f.stem for f in files]
