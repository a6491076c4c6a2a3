"""Label maps in the demo: uploaded PNGs, drawings, a built-in example, and their colours.

Colours are those of the built-in ``openmoji-seg`` classes (``OPENMOJI_SEG_CLASSES``: background white, outline
black, grey, red, orange/yellow, green, blue, purple/pink, skin/brown): a drawing or a colour PNG becomes class ids
by the nearest of these colours; an indexed or greyscale PNG is read as class ids directly.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from leangen.data.paired import OPENMOJI_SEG_CLASSES, colorize_labels, nearest_class
from leangen.serve.models import DemoError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PALETTE: list[tuple[int, int, int]] = [rgb for _, rgb in OPENMOJI_SEG_CLASSES]
CLASS_NAMES: list[str] = [n for n, _ in OPENMOJI_SEG_CLASSES]
MAX_SIDE = 2048  # an upload larger than this on a side is refused before decoding (the demo is interactive)


def palette_hex() -> list[str]:
    """The class colours as ``#rrggbb`` (brush colours of the drawing canvas)."""
    return ["#%02x%02x%02x" % rgb for rgb in PALETTE]


def read_upload(path: str | os.PathLike) -> tuple[np.ndarray, str]:
    """An uploaded label map -> int64 ``[H, W]`` class ids and a note on how it was read.

    Indexed (P) and greyscale (L, I) PNGs: pixel values are the ids. Colour PNGs (RGB, RGBA over white): the nearest
    class colour per pixel. ``DemoError`` for anything that is not a readable PNG."""
    from PIL import Image

    from leangen.data._images import open_image, read_image

    p = Path(path)
    shown = p.name
    try:
        with open(p, "rb") as f:
            head = f.read(len(PNG_SIGNATURE))
    except OSError as e:
        raise DemoError(f"cannot read the upload {shown}: {e.strerror or e}") from None
    if head != PNG_SIGNATURE:
        raise DemoError(f"{shown} is not a PNG file: upload a label map PNG (indexed or greyscale, pixel values = "
                        f"class ids; or a colour PNG in the class colours)")
    try:
        with open_image(p) as im:
            mode, (w, h) = im.mode, im.size
        if max(w, h) > MAX_SIDE:
            raise DemoError(f"{shown} is {w}x{h}; the demo takes label maps up to {MAX_SIDE} pixels a side")
        if mode in ("P", "L", "I", "I;16"):
            return read_image(p, dtype=np.int64), f"{shown}: {mode} PNG, pixel values read as class ids"
        rgb = read_image(p, rgb=True)
    except (ValueError, Image.DecompressionBombError) as e:
        raise DemoError(str(e).replace(str(p), shown)) from None
    return colours_to_labels(rgb), f"{shown}: colour PNG, mapped to the nearest of the {len(PALETTE)} class colours"


def colours_to_labels(rgb: np.ndarray) -> np.ndarray:
    """uint8 ``[H, W, 3]`` -> int64 ``[H, W]``: the nearest class colour per pixel."""
    x = torch.from_numpy(np.array(rgb[..., :3], dtype=np.uint8)).permute(2, 0, 1)[None]
    return nearest_class(x, torch.tensor(PALETTE)).numpy()[0]


def drawing_to_labels(image: np.ndarray) -> np.ndarray:
    """A canvas ``[H, W, 3|4]`` uint8 (transparent pixels count as background) -> int64 ``[H, W]`` class ids."""
    if image is None or image.ndim != 3 or image.shape[2] not in (3, 4):
        raise DemoError("draw a label map first (or upload one)")
    rgb = image[..., :3].astype(np.float32)
    if image.shape[2] == 4:  # over white, the background class
        alpha = image[..., 3:].astype(np.float32) / 255.0
        rgb = rgb * alpha + 255.0 * (1 - alpha)
    return colours_to_labels(rgb.round().astype(np.uint8))


def resize_labels(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a label map (ids never blend into other ids)."""
    if labels.shape == (height, width):
        return labels
    rows = (np.arange(height) * labels.shape[0] // height).clip(0, labels.shape[0] - 1)
    cols = (np.arange(width) * labels.shape[1] // width).clip(0, labels.shape[1] - 1)
    return labels[rows[:, None], cols[None, :]]


def example_labels(size: int = 32) -> np.ndarray:
    """A smiling face in the class ids ``[size, size]``: yellow disc, black outline, eyes, red mouth, blue drop."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    c = (size - 1) / 2
    r = np.hypot(yy - c, xx - c) / (size / 2)
    ids = {n: i for i, n in enumerate(CLASS_NAMES)}
    labels = np.full((size, size), ids["background"], dtype=np.int64)
    labels[r < 0.9] = ids["outline"]
    labels[r < 0.8] = ids["orange-yellow"]
    for ex in (-0.3, 0.3):  # eyes
        labels[np.hypot(yy / size - 0.4, xx / size - 0.5 - ex) < 0.08] = ids["outline"]
    mouth = (np.abs(np.hypot(yy / size - 0.5, xx / size - 0.5) - 0.25) < 0.05) & (yy / size > 0.6)
    labels[mouth] = ids["red"]
    labels[np.hypot(yy / size - 0.3, xx / size - 0.85) < 0.06] = ids["blue"]  # a tear of joy
    return labels


def colorize(labels: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """int ``[H, W]`` -> uint8 RGB ``[H, W, 3]`` in the class colours (ids past the palette: the last colour)."""
    t = torch.from_numpy(np.asarray(labels, dtype=np.int64))[None]
    return colorize_labels(t, PALETTE, num_classes or len(PALETTE))[0].permute(1, 2, 0).numpy()
