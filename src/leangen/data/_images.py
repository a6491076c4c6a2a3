"""Shared image-file plumbing for datasets and the dataset tool: listing, decoding, RGB conversion, crop + resize.

Everything here works on PIL images and raw bytes; torch is not imported so the dataset tool stays light.
"""
from __future__ import annotations

import io
import json
import os
import struct
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np
from PIL import Image, ImageOps

# Lower-case suffixes recognised as images, both in folders and in zips.
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})

ResizeFilter = Literal["box", "lanczos", "bicubic"]
RESAMPLE: dict[str, Image.Resampling] = {
    "box": Image.Resampling.BOX,
    "lanczos": Image.Resampling.LANCZOS,
    "bicubic": Image.Resampling.BICUBIC,
}

# Errors that mean "this file is not a usable image" (PIL raises all of these for corrupt or truncated data).
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error,
                 Image.DecompressionBombError, zipfile.BadZipFile)

# EXIF orientations that swap width and height once applied.
_TRANSPOSED_ORIENTATIONS = {5, 6, 7, 8}


def _is_hidden(rel: str) -> bool:
    # macOS litter (".DS_Store", "._x.png", "__MACOSX/") must never be mistaken for images.
    return any(part.startswith(".") or part == "__MACOSX" for part in rel.split("/"))


def is_image_name(rel: str) -> bool:
    return not _is_hidden(rel) and os.path.splitext(rel)[1].lower() in IMAGE_EXTENSIONS


class ImageReadError(ValueError):
    """An image file that cannot be decoded; ``name`` is the file, ``reason`` what went wrong."""

    def __init__(self, name: str, where: os.PathLike | str, reason: str) -> None:
        super().__init__(f"cannot read image {name!r} in {where}: {reason}")
        self.name, self.reason = name, reason


class ImageSource:
    """The image files of a folder (recursive) or a zip archive, as sorted POSIX-style relative names.

    Reads are by name; a zip handle is opened lazily and dropped on pickling, so the object can be sent
    to DataLoader worker processes.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            self.kind = "folder"
            names = []
            for root, dirs, files in os.walk(self.path):
                dirs.sort()  # deterministic walk; the final list is sorted anyway
                rel_root = Path(root).relative_to(self.path).as_posix()
                for f in files:
                    rel = f if rel_root == "." else f"{rel_root}/{f}"
                    names.append(rel)
            self._all = sorted(names)
        elif self.path.is_file():
            if not zipfile.is_zipfile(self.path):
                raise ValueError(f"{self.path} is neither a folder nor a zip archive")
            self.kind = "zip"
            with zipfile.ZipFile(self.path) as zf:
                self._sizes = {i.filename: i.file_size for i in zf.infolist() if not i.is_dir()}
            self._all = sorted(self._sizes)
        else:
            raise FileNotFoundError(f"no such file or folder: {self.path}")
        self.names: list[str] = [n for n in self._all if is_image_name(n)]
        self._zip: zipfile.ZipFile | None = None
        self._zip_pid = -1

    # -- raw access -------------------------------------------------------------------------------------------
    def _zipfile(self) -> zipfile.ZipFile:
        # A handle inherited through fork() (DataLoader workers) shares its file offset with the parent's:
        # concurrent reads would interleave, so each process opens its own.
        if self._zip is None or self._zip_pid != os.getpid():
            self._zip = zipfile.ZipFile(self.path)
            self._zip_pid = os.getpid()
        return self._zip

    def open(self, name: str) -> BinaryIO:
        if self.kind == "zip":
            return self._zipfile().open(name, "r")  # type: ignore[return-value]
        return open(self.path / name, "rb")

    def read_bytes(self, name: str) -> bytes:
        with self.open(name) as f:
            return f.read()

    def file_size(self, name: str) -> int:
        return self._sizes[name] if self.kind == "zip" else (self.path / name).stat().st_size

    def has(self, name: str) -> bool:
        return name in self._all

    def read_json(self, name: str = "dataset.json") -> dict[str, Any] | None:
        """The parsed JSON file ``name`` at the root, or None when absent."""
        if not self.has(name):
            return None
        try:
            obj = json.loads(self.read_bytes(name).decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"{self.path}: {name} is not valid JSON ({e})") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{self.path}: {name} must hold a JSON object")
        return obj

    def disk_size(self) -> int:
        """Bytes on disk: the archive size, or the sum of all files in the folder."""
        if self.kind == "zip":
            return self.path.stat().st_size
        return sum((self.path / n).stat().st_size for n in self._all)

    def close(self) -> None:
        if self._zip is not None and self._zip_pid == os.getpid():
            self._zip.close()
        self._zip = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_zip"] = None  # an open ZipFile cannot cross a process boundary
        return state

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # -- images -----------------------------------------------------------------------------------------------
    def probe(self, name: str) -> tuple[tuple[int, int], str]:
        """``((width, height), mode)`` from the header only (EXIF rotation applied); ValueError naming a bad file."""
        try:
            with self.open(name) as f, Image.open(f) as img:
                return displayed_size(img), img.mode
        except DECODE_ERRORS as e:
            raise ImageReadError(name, self.path, describe_error(e)) from None

    def load_rgb(self, name: str) -> Image.Image:
        """Decode ``name`` fully into an RGB image; raises ValueError naming the file if it is unreadable."""
        try:
            with self.open(name) as f:
                data = f.read()
            return decode_rgb(data)
        except DECODE_ERRORS as e:
            raise ImageReadError(name, self.path, describe_error(e)) from None


# Pixels an image file may declare before it is refused unread: Pillow's own decompression-bomb threshold (~89 M,
# e.g. 9459 x 9459), which it only warns about; a 20000 x 20000 PNG of a few KB would otherwise be decoded.
MAX_IMAGE_PIXELS = int(Image.MAX_IMAGE_PIXELS or 89_478_485)


def open_image(path: str | os.PathLike, modes: tuple[str, ...] | None = None,
               max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """``Image.open(path)`` after checking its header: one-line ``ValueError`` naming the file when it is not an
    image, declares more than ``max_pixels`` pixels (a decompression bomb) or, with ``modes``, has another mode.
    Only the header has been read; ``read_image`` decodes. Close what it returns (``with open_image(...) as im``)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # the header alone says so: stop there
            im = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ValueError(f"{path}: refused, it declares more pixels than the limit of {max_pixels} "
                         f"({describe_error(e).split('.')[0]})") from None
    except DECODE_ERRORS as e:
        raise ValueError(f"{path}: not a readable image ({describe_error(e)})") from None
    w, h = im.size
    if w < 1 or h < 1 or w * h > max_pixels:
        im.close()
        raise ValueError(f"{path}: refused, it declares {w}x{h} = {w * h} pixels (the limit is {max_pixels})")
    if modes is not None and im.mode not in modes:
        mode = im.mode
        im.close()
        raise ValueError(f"{path}: a {mode} image; expected one of the modes {', '.join(modes)}")
    return im


def read_image(path: str | os.PathLike, modes: tuple[str, ...] | None = None, rgb: bool = False,
               dtype: Any = None) -> np.ndarray:
    """The pixels of ``path`` as an array (``rgb``: converted to RGB ``[H, W, 3]`` uint8, alpha over white), after
    the checks of ``open_image``; a truncated or corrupt file is a one-line ``ValueError`` naming it."""
    with open_image(path, modes) as im:
        try:
            im.load()
            return np.asarray(to_rgb(im)) if rgb else np.asarray(im, dtype=dtype)
        except DECODE_ERRORS as e:
            raise ValueError(f"{path}: not a readable image ({describe_error(e)})") from None


def describe_error(e: BaseException) -> str:
    if isinstance(e, Image.UnidentifiedImageError):
        return "not a recognised image format"  # PIL's own message only shows a BytesIO repr
    msg = str(e) or type(e).__name__
    return msg if isinstance(e, (OSError, ValueError)) else f"{type(e).__name__}: {msg}"


def displayed_size(img: Image.Image) -> tuple[int, int]:
    w, h = img.size
    try:
        if img.getexif().get(0x0112) in _TRANSPOSED_ORIENTATIONS:
            return h, w
    except Exception:  # a broken EXIF block is not worth failing over; the pixels may still be fine
        pass
    return w, h


def decode_rgb(data: bytes) -> Image.Image:
    """Decode encoded image bytes to an RGB PIL image (first frame; EXIF rotation applied; alpha over white)."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()  # forces full decoding so truncated files fail here, not later
        try:
            img = ImageOps.exif_transpose(img)
        except Exception:
            pass
        return to_rgb(img)


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB: alpha is composited on white, grayscale is replicated, 16-bit is scaled to 8."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        # PIL's own conversion clips 16-bit values to 255 instead of rescaling them.
        arr = np.asarray(img, dtype=np.float64)
        peak = arr.max(initial=0)
        if img.mode == "F" and peak <= 1.0:
            arr = arr * 255.0  # float images in [0, 1]
        elif img.mode != "F" and peak > 255:
            arr = arr / 257.0  # 16-bit: 65535 -> 255
        img = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        white.alpha_composite(rgba)
        return white.convert("RGB")
    return img.convert("RGB")


def center_crop_box(width: int, height: int) -> tuple[int, int, int, int]:
    """The largest centred square inside a ``width`` x ``height`` image, as a PIL box."""
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def crop_resize(img: Image.Image, resolution: int, resize_filter: ResizeFilter = "lanczos") -> Image.Image:
    """Centre-crop to a square, then resize to ``resolution`` x ``resolution`` (no-op when already that size)."""
    box = center_crop_box(*img.size)
    side = box[2] - box[0]
    if side == resolution:
        return img if img.size == (side, side) else img.crop(box)
    # resize(box=...) crops and resamples in one pass, without materialising the crop.
    return img.resize((resolution, resolution), RESAMPLE[resize_filter], box=box)


def parse_labels(obj: dict[str, Any] | None, names: list[str], where: str) -> np.ndarray | None:
    """StyleGAN ``dataset.json`` labels for ``names``: int64 ``[N]`` classes, float32 ``[N, D]`` vectors, or None."""
    if obj is None or obj.get("labels") is None:
        return None
    raw = obj["labels"]
    try:
        table = {str(k).replace("\\", "/"): v for k, v in raw}
    except (TypeError, ValueError):
        raise ValueError(f"{where}: dataset.json 'labels' must be null or a list of [file name, label] pairs") from None
    missing = [n for n in names if n not in table]
    if missing:
        raise ValueError(f"{where}: dataset.json has no label for {missing[0]!r} ({len(missing)} image(s) unlabeled)")
    values = [table[n] for n in names]
    arr = np.asarray(values)
    if arr.dtype.kind in "iu" and arr.ndim == 1:
        return arr.astype(np.int64)
    if arr.dtype.kind in "iuf" and arr.ndim in (1, 2):
        return arr.astype(np.float32)
    raise ValueError(f"{where}: dataset.json labels must be integers or equal-length lists of numbers")
