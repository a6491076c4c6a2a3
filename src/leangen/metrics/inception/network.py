"""The TF-Inception (2015-12-05) graph up to pool3 as our own module, and ``InceptionFeatures`` (images -> features).

Parameter names follow torchvision's InceptionV3, so state dicts of that layout load directly; layer registration
order is the TF graph's (weights archives are mapped onto it by position, see ``weights``).
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Literal

import torch
import torch.nn.functional as F
from torch import nn

from leangen.metrics.inception.preprocess import RESIZE_PROTOCOL, ResizeMode, preprocess_images

FEATURE_NET = "tf-inception-2015-12-05 pool3"
FEATURE_DIM = 2048


class _FrozenBN(nn.Module):
    """Inference-only batch norm with TF's eps 1e-3; statistics never update, whatever ``train()`` says."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels), requires_grad=False)  # TF graph has no scale: stays 1
        self.bias = nn.Parameter(torch.zeros(channels), requires_grad=False)
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, training=False, eps=1e-3)


class _ConvBN(nn.Module):
    """conv (no bias) -> BN -> ReLU, the only learned layer type of the TF graph."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], stride: int = 1,
                 padding: int | tuple[int, int] = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = _FrozenBN(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg3(x: torch.Tensor) -> torch.Tensor:
    # TF's SAME avg pool divides by the number of *valid* pixels at borders -> count_include_pad=False.
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class _BlockA(nn.Module):  # TF mixed, mixed_1, mixed_2 (35x35)
    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        # Registration order = the archive's layer order (the weights are mapped by position).
        self.branch1x1 = _ConvBN(cin, 64, 1)
        self.branch5x5_1 = _ConvBN(cin, 48, 1)
        self.branch5x5_2 = _ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = _ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _ConvBN(96, 96, 3, padding=1)
        self.branch_pool = _ConvBN(cin, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_avg3(x)),
        ], 1)


class _BlockB(nn.Module):  # TF mixed_3 (35 -> 17)
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = _ConvBN(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = _ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = _ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _ConvBN(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, 3, stride=2),
        ], 1)


class _BlockC(nn.Module):  # TF mixed_4 .. mixed_7 (17x17, factorized 7x7)
    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        self.branch1x1 = _ConvBN(cin, 192, 1)
        self.branch7x7_1 = _ConvBN(cin, c7, 1)
        self.branch7x7_2 = _ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = _ConvBN(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = _ConvBN(cin, c7, 1)
        self.branch7x7dbl_2 = _ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = _ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = _ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = _ConvBN(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = _ConvBN(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d = layer(d)
        return torch.cat([
            self.branch1x1(x),
            self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
            d,
            self.branch_pool(_avg3(x)),
        ], 1)


class _BlockD(nn.Module):  # TF mixed_8 (17 -> 8)
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = _ConvBN(cin, 192, 1)
        self.branch3x3_2 = _ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _ConvBN(cin, 192, 1)
        self.branch7x7x3_2 = _ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _ConvBN(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x)))
        return torch.cat([
            self.branch3x3_2(self.branch3x3_1(x)),
            self.branch7x7x3_4(t),
            F.max_pool2d(x, 3, stride=2),
        ], 1)


class _BlockE(nn.Module):  # TF mixed_9 / mixed_10 (8x8, expanded filter bank)
    def __init__(self, cin: int, pool: Literal["avg", "max"]) -> None:
        super().__init__()
        self.pool = pool
        self.branch1x1 = _ConvBN(cin, 320, 1)
        self.branch3x3_1 = _ConvBN(cin, 384, 1)
        self.branch3x3_2a = _ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _ConvBN(cin, 448, 1)
        self.branch3x3dbl_2 = _ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _ConvBN(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3_1(x)
        b = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        # The TF quirk: the 2015-12-05 graph max-pools (not average-pools) in the last block's pool branch.
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.pool == "max" else _avg3(x)
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(a), self.branch3x3_2b(a),
            self.branch3x3dbl_3a(b), self.branch3x3dbl_3b(b),
            self.branch_pool(pooled),
        ], 1)


class InceptionV3Trunk(nn.Module):
    """The TF-Inception-2015-12-05 graph up to pool3: normalized ``[N, 3, 299, 299]`` -> ``[N, 2048]``."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = _ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = _ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = _ConvBN(80, 192, 3)
        self.Mixed_5b = _BlockA(192, 32)
        self.Mixed_5c = _BlockA(256, 64)
        self.Mixed_5d = _BlockA(288, 64)
        self.Mixed_6a = _BlockB(288)
        self.Mixed_6b = _BlockC(768, 128)
        self.Mixed_6c = _BlockC(768, 160)
        self.Mixed_6d = _BlockC(768, 160)
        self.Mixed_6e = _BlockC(768, 192)
        self.Mixed_7a = _BlockD(768)
        self.Mixed_7b = _BlockE(1280, "avg")
        self.Mixed_7c = _BlockE(2048, "max")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        if x.shape[-2:] != (8, 8):  # a fixed 8x8 pool: other sizes would average only part of the map
            raise ValueError(f"pool3 expects an 8x8 map (299x299 input), got {tuple(x.shape[-2:])}")
        return F.avg_pool2d(x, 8).flatten(1)

    def conv_layers(self) -> list[_ConvBN]:
        """The 94 conv layers in the order of the TF graph / ``default_1.pt`` archive."""
        return [m for m in self.modules() if isinstance(m, _ConvBN)]

    def conv_layer_names(self) -> list[str]:
        """Module names of ``conv_layers()``, same order (the prefixes of their state-dict keys)."""
        return [name for name, m in self.named_modules() if isinstance(m, _ConvBN)]


@contextlib.contextmanager
def _full_fp32() -> Iterator[None]:
    """Disable TF32 on CUDA while features are computed: TF32 convs would move features by ~1e-3 relative."""
    if not torch.cuda.is_available():
        yield
        return
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


class InceptionFeatures(nn.Module):
    """Images -> TF-Inception pool3 features, with the protocol's preprocessing built in.

    ``forward(images)``: ``uint8 [N, 3 (or 1), H, W]`` in 0..255 (any H, W), or float generator output in [-1, 1]
    (quantized to uint8 first, see ``quantize_images``). Returns float32 ``[N, 2048]`` (non-negative).
    ``resize``: ``"legacy_tensorflow"`` (StyleGAN protocol) or ``"clean"`` (clean-fid). Always in eval mode, no grads.
    """

    def __init__(self, resize: ResizeMode = "legacy_tensorflow") -> None:
        super().__init__()
        if resize not in RESIZE_PROTOCOL:
            raise ValueError(f"unknown resize mode {resize!r}; expected one of {', '.join(RESIZE_PROTOCOL)}")
        self.resize: ResizeMode = resize
        # channels_last: ~25% faster convs on CPU (oneDNN); changes features only at float-rounding level (~1e-5).
        self.net = InceptionV3Trunk().to(memory_format=torch.channels_last)
        self.requires_grad_(False)
        self.eval()

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8/float images -> the network input (see ``preprocess_images``)."""
        return preprocess_images(images, self.resize)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        device = next(self.parameters()).device
        x = self.preprocess(images.to(device)).contiguous(memory_format=torch.channels_last)
        with _full_fp32():
            return self.net(x).float()

