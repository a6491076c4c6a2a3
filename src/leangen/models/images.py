"""Image conversions shared by every model's ``generate``/``translate``: [-1, 1] floats to uint8, PIL or grids."""
from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch

OutputType = Literal["pil", "pt", "np"]


def convert_images(images: torch.Tensor, output_type: OutputType) -> Any:
    """Float ``[N, 3, H, W]`` in [-1, 1] -> ``pt`` (unchanged), ``np`` (uint8 ``[N, H, W, 3]``) or ``pil`` (list)."""
    if output_type == "pt":
        return images
    arr = to_uint8(images).permute(0, 2, 3, 1).numpy()
    if output_type == "np":
        return arr
    from PIL import Image

    return [Image.fromarray(a) for a in arr]


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """``[-1, 1]`` float images -> uint8 ``[0, 255]`` (StyleGAN quantization: x * 127.5 + 128, clamp, truncate)."""
    return (images.float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def image_grid(images: torch.Tensor, ncols: int | None = None) -> np.ndarray:
    """``[N, 3, H, W]`` in [-1, 1] -> one uint8 ``[rows*H, cols*W, 3]`` grid."""
    n, c, h, w = images.shape
    ncols = ncols or int(np.ceil(np.sqrt(n)))
    nrows = int(np.ceil(n / ncols))
    grid = torch.full((nrows * ncols, c, h, w), 255, dtype=torch.uint8)
    grid[:n] = to_uint8(images)
    grid = grid.reshape(nrows, ncols, c, h, w).permute(0, 3, 1, 4, 2).reshape(nrows * h, ncols * w, c)
    return grid.numpy()
