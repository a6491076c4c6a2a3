"""Paired datasets on disk: label map -> image pairs in a folder leangen reads and writes.

Layout (``create_pairs`` writes it; ``open_pairs`` reads it)::

    dataset.json   {"paired": true, "classes": [name, ...], "palette": [[r, g, b], ...] | null, "sources": {...}}
    labels/<name>.png     class ids, greyscale (L) or indexed (P) PNG, any size (all pairs one size)
    images/<name>.png     the target, RGB, the label map's size
    instances/<name>.png  optional: instance ids, 16-bit greyscale PNG (dataset.json has "instances": true)

Sources ``create_pairs`` accepts: two folders with matching file names (``labels`` and ``images``), or the pix2pix
side-by-side layout (one folder of ``A|B`` images, A the colour-coded label map on the left, B the target). Label
maps are class-id PNGs, or RGB colour-coded with a palette file (JSON ``[[r, g, b], ...]`` or
``{"classes": [...], "palette": [...]}``; one colour per class, ids in palette order). Optional instance maps come
from a third folder of the same names: greyscale (L, I, I;16) or indexed PNGs of integer instance ids, the label
map's size (Cityscapes' ``*_instanceIds.png`` qualify). Mismatched names, unknown
colours, size mismatches and ids >= the number of classes are ``ValueError`` naming the file; everything is read and
checked before anything is written, and the folder appears in one rename.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from leangen.data.paired import PairedDataset, read_label_map

PAIRS_MARKER = "paired"
# Class ids a paired folder can store: its label maps are 16-bit PNGs beyond 256 classes.
MAX_LABEL_CLASSES = 1 << 16


def is_pairs_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder in the paired layout (its ``dataset.json`` says ``"paired": true``)."""
    meta = Path(path) / "dataset.json"
    if not meta.is_file():
        return False
    try:
        return bool(json.loads(meta.read_text()).get(PAIRS_MARKER))
    except (json.JSONDecodeError, AttributeError, UnicodeDecodeError):
        return False


def read_palette(path: str | os.PathLike) -> tuple[list[str] | None, list[tuple[int, int, int]]]:
    """``(classes or None, palette)`` from a palette JSON file (a list of colours, or an object with both)."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable palette JSON ({e})") from None
    classes = doc.get("classes") if isinstance(doc, dict) else None
    colours = doc.get("palette") if isinstance(doc, dict) else doc
    try:
        palette = [tuple(int(v) for v in c) for c in colours]  # type: ignore[union-attr]
        assert palette and all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in palette)
    except (TypeError, ValueError, AssertionError):
        raise ValueError(f"{path}: the palette must be a list of [r, g, b] colours (0..255)") from None
    if len(set(palette)) != len(palette):
        raise ValueError(f"{path}: the palette repeats a colour; each class needs its own")
    if classes is not None and len(classes) != len(palette):
        raise ValueError(f"{path}: {len(classes)} class names for {len(palette)} colours")
    return classes, palette  # type: ignore[return-value]


def colours_to_ids(rgb: np.ndarray, palette: list[tuple[int, int, int]], where: Path) -> np.ndarray:
    """uint8 ``[H, W, 3]`` colour-coded map -> int64 ``[H, W]`` ids; ``ValueError`` naming a colour not in the
    palette."""
    code = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    keys = np.array([(r << 16) | (g << 8) | b for r, g, b in palette], dtype=np.int64)
    order = np.argsort(keys)
    pos = np.clip(np.searchsorted(keys[order], code), 0, len(keys) - 1)
    ids = order[pos]
    bad = keys[ids] != code
    if bad.any():
        y, x = (int(v[0]) for v in np.nonzero(bad))
        raise ValueError(f"{where}: colour {tuple(int(v) for v in rgb[y, x])} at x={x}, y={y} is not in the palette "
                         f"({int(bad.sum())} pixels)")
    return ids


def _read_rgb(path: Path) -> np.ndarray:
    from leangen.data._images import read_image

    return read_image(path, rgb=True)  # header checked first (decompression bombs), one-line errors


def _label_ids(path: Path, palette: list[tuple[int, int, int]] | None) -> np.ndarray:
    """Class ids of one label map: colour-coded with ``palette`` when given, else id PNG."""
    if palette is not None:
        return colours_to_ids(_read_rgb(path), palette, path)
    return read_label_map(path)


def _png_names(folder: Path) -> dict[str, Path]:
    """``{stem: file}`` of the PNG/JPEG files of ``folder``; ``ValueError`` when two files share a stem (``p0.png`` and
    ``p0.jpg``): which one is the pair would be a guess."""
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder")
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in (".png", ".jpg", ".jpeg") or p.name.startswith("."):
            continue
        if p.stem in out:
            raise ValueError(f"{out[p.stem]} and {p} have the same name; keep one of them")
        out[p.stem] = p
    return out


def load_pair_sources(*, labels: str | os.PathLike | None = None, images: str | os.PathLike | None = None,
                      ab: str | os.PathLike | None = None, palette: str | os.PathLike | None = None,
                      classes: list[str] | None = None,
                      instances: str | os.PathLike | None = None) -> PairedDataset:
    """Read and check pairs from ``labels`` + ``images`` folders (matching names) or an ``ab`` folder of A|B images.

    ``palette``: file of the label colours (required for A|B and RGB label maps). ``classes``: names (default: from
    the palette file, or ``0 .. K-1`` with K = the largest id + 1). ``instances``: optional folder of instance-id
    maps, one per pair (same names, same size).
    """
    pal_classes, pal = read_palette(palette) if palette else (None, None)
    classes = classes or pal_classes
    names: list[str] = []
    maps: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    files: list[Path] = []
    if ab is not None:
        if labels is not None or images is not None:
            raise ValueError("give either --ab or --labels with --images, not both")
        if pal is None:
            raise ValueError("A|B pairs carry colour-coded label maps: give their --palette")
        for name, f in _png_names(Path(ab)).items():
            rgb = _read_rgb(f)
            if rgb.shape[1] % 2:
                raise ValueError(f"{f} is {rgb.shape[1]} px wide: an A|B pair needs an even width")
            half = rgb.shape[1] // 2
            names.append(name), files.append(f)
            maps.append(colours_to_ids(np.ascontiguousarray(rgb[:, :half]), pal, f))
            targets.append(np.ascontiguousarray(rgb[:, half:]))
    else:
        if labels is None or images is None:
            raise ValueError("give --labels and --images folders (matching names), or --ab")
        lab, img = _png_names(Path(labels)), _png_names(Path(images))
        missing, extra = sorted(set(lab) - set(img)), sorted(set(img) - set(lab))
        if missing or extra:
            what = [f"no image for label map(s) {', '.join(missing[:5])}" if missing else "",
                    f"no label map for image(s) {', '.join(extra[:5])}" if extra else ""]
            raise ValueError(f"{labels} and {images} do not pair up: " + "; ".join(w for w in what if w))
        for name in lab:
            ids, rgb = _label_ids(lab[name], pal), _read_rgb(img[name])
            if ids.shape != rgb.shape[:2]:
                raise ValueError(f"{lab[name]} is {ids.shape[1]}x{ids.shape[0]} but {img[name]} is "
                                 f"{rgb.shape[1]}x{rgb.shape[0]}")
            names.append(name), files.append(lab[name]), maps.append(ids), targets.append(rgb)
    if not names:
        raise ValueError(f"no pairs found in {ab or labels}")
    for f, m in zip(files, maps):
        if m.shape != maps[0].shape:
            raise ValueError(f"{f} is {m.shape[1]}x{m.shape[0]} but {files[0]} is {maps[0].shape[1]}x"
                             f"{maps[0].shape[0]}; all pairs of a dataset have one size")
    k = len(classes) if classes else (len(pal) if pal else int(max(int(m.max()) for m in maps)) + 1)
    for f, m in zip(files, maps):
        if int(m.max()) >= k or int(m.min()) < 0:
            raise ValueError(f"{f}: label id {int(m.max())} but the dataset has {k} classes (ids 0..{k - 1})")
    inst = None if instances is None else torch.from_numpy(_instance_maps(Path(instances), names, files, maps))
    images_t = torch.from_numpy(np.stack(targets)).permute(0, 3, 1, 2).contiguous()
    return PairedDataset(images_t, torch.from_numpy(np.stack(maps)), names=names,
                         classes=list(classes) if classes else [str(i) for i in range(k)], palette=pal,
                         name=Path(str(ab or labels)).name, instances=inst)


def _instance_maps(folder: Path, names: list[str], files: list[Path], maps: list[np.ndarray]) -> np.ndarray:
    """int64 ``[N, H, W]`` instance ids for the pairs ``names`` (label maps ``files``/``maps``) from ``folder``;
    ``ValueError`` naming the files when names do not pair up, a map is not an id PNG or sizes differ."""
    found = {n: p for n, p in _png_names(folder).items() if p.suffix.lower() == ".png"}
    missing, extra = [n for n in names if n not in found], sorted(set(found) - set(names))
    if missing or extra:
        what = [f"no instance map for pair(s) {', '.join(missing[:5])}" if missing else "",
                f"no pair for instance map(s) {', '.join(extra[:5])}" if extra else ""]
        raise ValueError(f"{folder} does not pair up with the label maps: " + "; ".join(w for w in what if w))
    out = []
    for name, f, m in zip(names, files, maps):
        ids = read_label_map(found[name])
        if ids.shape != m.shape:
            raise ValueError(f"instance map {found[name]} is {ids.shape[1]}x{ids.shape[0]} but {f} is "
                             f"{m.shape[1]}x{m.shape[0]}")
        if int(ids.min()) < 0:
            raise ValueError(f"instance map {found[name]} has negative ids")
        out.append(ids)
    return np.stack(out)


def write_pairs(dataset: PairedDataset, dest: str | os.PathLike, sources: dict[str, Any] | None = None) -> Path:
    """Write ``dataset`` as a paired folder at ``dest`` (created in a temporary sibling, then renamed into place;
    an existing ``dest`` is an error)."""
    dest = Path(dest)
    if dest.exists():
        raise ValueError(f"{dest} already exists; choose a new folder")
    if dataset.num_classes > MAX_LABEL_CLASSES:
        raise ValueError(f"{dataset.num_classes} classes: a paired folder stores class ids in 16-bit PNGs, which hold "
                         f"at most {MAX_LABEL_CLASSES}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        (tmp / "labels").mkdir(), (tmp / "images").mkdir()
        if dataset.instances is not None:
            (tmp / "instances").mkdir()
        # 8-bit PNGs up to 256 classes, 16-bit (mode I;16, read back losslessly) beyond: Pillow writes no 32-bit PNG
        dtype = np.uint8 if dataset.num_classes <= 256 else np.uint16
        for i, name in enumerate(dataset.names):
            Image.fromarray(dataset.labels[i].numpy().astype(dtype)).save(tmp / "labels" / f"{name}.png")
            Image.fromarray(dataset.images[i].permute(1, 2, 0).numpy()).save(tmp / "images" / f"{name}.png")
            if dataset.instances is not None:
                Image.fromarray(_uint16_ids(dataset.instances[i].numpy(), name)).save(tmp / "instances" / f"{name}.png")
        meta = {PAIRS_MARKER: True, "classes": dataset.classes, "instances": dataset.instances is not None,
                "palette": [list(c) for c in dataset.palette] if dataset.palette else None,
                "count": len(dataset), "size": list(dataset.images.shape[2:]), "sources": sources or {}}
        (tmp / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _uint16_ids(ids: np.ndarray, name: str) -> np.ndarray:
    """Instance ids ``[H, W]`` as uint16 for a 16-bit PNG (PIL writes no 32-bit PNGs). Ids beyond 65535 are
    renumbered ``0 .. n-1`` in order, which keeps every boundary (only where ids change matters)."""
    if int(ids.min()) >= 0 and int(ids.max()) <= 0xFFFF:
        return ids.astype(np.uint16)
    compact = np.unique(ids, return_inverse=True)[1].reshape(ids.shape)
    if int(compact.max()) > 0xFFFF:
        raise ValueError(f"instance map {name}: more than 65536 instances")
    return compact.astype(np.uint16)


def open_pairs(path: str | os.PathLike) -> PairedDataset:
    """Read a paired folder written by ``write_pairs`` (checked like ``load_pair_sources``)."""
    path = Path(path)
    meta = json.loads((path / "dataset.json").read_text())
    ds = load_pair_sources(labels=path / "labels", images=path / "images", classes=meta.get("classes"),
                           instances=path / "instances" if meta.get("instances") else None)
    if meta.get("palette"):
        ds.palette = [tuple(c) for c in meta["palette"]]
    ds.name = path.name
    return ds
