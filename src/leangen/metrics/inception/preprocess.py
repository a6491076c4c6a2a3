"""Image preparation for TF-Inception: quantize to uint8, resize to 299 (TF1 bilinear or clean-fid bicubic), scale.

``preprocess_images``: uint8 ``[N, 3|1, H, W]`` (or float generator output in [-1, 1]) -> float32
``[N, 3, 299, 299]`` in [-1, 0.9921875]. The protocol is described in ``leangen.metrics.inception``.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch

ResizeMode = Literal["legacy_tensorflow", "clean"]

INPUT_SIZE = 299
#: What each resize mode means, as written into metric records.
RESIZE_PROTOCOL: dict[str, str] = {
    "legacy_tensorflow": "legacy_tensorflow (TF1 bilinear, no antialias) to 299",
    "clean": "clean (PIL bicubic, antialiased, float per channel, clip 0..255) to 299",
}


def quantize_images(images: torch.Tensor) -> torch.Tensor:
    """Generator output, float ``[N, C, H, W]`` in about [-1, 1] -> ``uint8`` in 0..255, like a saved PNG.

    ``x * 127.5 + 128`` then truncation equals rounding ``x * 127.5 + 127.5`` to the nearest integer (StyleGAN's
    convention for metrics and image files), so generated and real images meet the network on the same 256 levels.
    """
    if images.dtype == torch.uint8:
        return images
    return (images.float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def _as_uint8_rgb(images: torch.Tensor) -> torch.Tensor:
    """Validate ``[N, C, H, W]`` images (uint8, or float generator output in [-1, 1]) and return uint8 RGB."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError(f"expected images as a [N, C, H, W] tensor, got "
                         f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}")
    if images.is_floating_point():
        # Generator output is unbounded (values beyond +-1 are clamped), but a non-negative batch reaching past 2 is
        # almost surely 0..255 data: quantizing it as [-1, 1] would silently saturate, so refuse it.
        if images.numel() and float(images.detach().amin()) >= 0 and float(images.detach().amax()) > 2.0:
            raise ValueError("float images must be generator output in [-1, 1]; pass real images as uint8 0..255")
        images = quantize_images(images)
    elif images.dtype != torch.uint8:
        raise TypeError(f"images must be uint8 (0..255) or float in [-1, 1], got {images.dtype}")
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)  # grayscale: the network expects RGB (as StyleGAN does)
    if images.shape[1] != 3:
        raise ValueError(f"images must have 1 or 3 channels, got {images.shape[1]}")
    return images


def _tf1_axis(in_size: int, out_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source indices and weights along one axis, as TF1 ``resize_bilinear(align_corners=False)`` computes them."""
    # TF1 computes scale and source positions in float32: src = dst * (in / out) (no half-pixel offset).
    scale = torch.tensor(in_size / out_size, dtype=torch.float32)
    src = torch.arange(out_size, dtype=torch.float32) * scale
    lo = src.floor().to(torch.long).clamp_(0, in_size - 1)
    hi = (lo + 1).clamp_(max=in_size - 1)  # the last row/column repeats itself (TF clamps, no padding)
    frac = src - lo.to(torch.float32)
    return lo.to(device), hi.to(device), frac.to(device)


def resize_tf1_bilinear(x: torch.Tensor, size: int | tuple[int, int] = INPUT_SIZE) -> torch.Tensor:
    """Resize float ``[N, C, H, W]`` like TensorFlow 1's ``tf.image.resize_bilinear(align_corners=False)``.

    Source coordinate of output pixel ``i`` is ``i * in / out`` (no half-pixel centres), bilinear between the two
    neighbouring pixels, the last one clamped; no anti-aliasing, so shrinking samples (aliases) like TF1 did.
    Returns ``[N, C, size, size]`` in the input's dtype.
    """
    oh, ow = (size, size) if isinstance(size, int) else size
    n, c, h, w = x.shape
    if (h, w) == (oh, ow):
        return x  # scale 1: every source position is an integer, so TF1 returns the input unchanged
    y0, y1, fy = _tf1_axis(h, oh, x.device)
    x0, x1, fx = _tf1_axis(w, ow, x.device)
    fx = fx.to(x.dtype)
    fy = fy.to(x.dtype)
    # Horizontal lerp first, then vertical: TF1's order of operations (top/bottom rows, then between them).
    left, right = x.index_select(3, x0), x.index_select(3, x1)
    rows = left + (right - left) * fx
    top, bottom = rows.index_select(2, y0), rows.index_select(2, y1)
    return top + (bottom - top) * fy[:, None]


def resize_clean(images: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """clean-fid's resize: PIL bicubic (anti-aliased) on each channel as a float32 image, clipped to [0, 255].

    ``images``: uint8 ``[N, 3, H, W]``; returns float32 ``[N, 3, size, size]`` in [0, 255] on the input's device.
    Runs on the CPU (PIL), one channel at a time, with no re-quantization.
    """
    from PIL import Image

    arr = images.detach().cpu().numpy()
    out = np.empty((arr.shape[0], arr.shape[1], size, size), dtype=np.float32)
    for i in range(arr.shape[0]):
        for ch in range(arr.shape[1]):
            img = Image.fromarray(arr[i, ch].astype(np.float32), mode="F")
            out[i, ch] = np.asarray(img.resize((size, size), resample=Image.Resampling.BICUBIC)).clip(0, 255)
    return torch.from_numpy(out).to(images.device)


def preprocess_images(images: torch.Tensor, resize: ResizeMode = "legacy_tensorflow") -> torch.Tensor:
    """uint8 ``[N, 3|1, H, W]`` (or float generator output in [-1, 1]) -> the network input: float32
    ``[N, 3, 299, 299]`` in [-1, 0.9921875], i.e. ``(resized - 128) / 128``."""
    if resize not in RESIZE_PROTOCOL:
        raise ValueError(f"unknown resize mode {resize!r}; expected one of {', '.join(RESIZE_PROTOCOL)}")
    x = _as_uint8_rgb(images)
    if resize == "clean":
        x = resize_clean(x, INPUT_SIZE)
    else:
        x = resize_tf1_bilinear(x.float(), INPUT_SIZE)
    return (x.float() - 128) / 128  # TF Inception's input scaling
