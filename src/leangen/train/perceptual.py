"""Perceptual losses for paired training on networks that are available offline, frozen.

- ``inception`` (the default): the TF-Inception trunk leangen already uses for FID (``leangen.metrics.inception``).
  L1 between the features of output and target after ``Conv2d_2b_3x3``, ``Conv2d_4a_3x3`` and ``Mixed_5d``, weighted
  1/4, 1/2, 1. Images stay at their own size (no resize to 299: the layers used are convolutional) and in [-1, 1],
  which is the trunk's input range.
- ``vgg19``: the official ASAP-Net/SPADE choice, when the user gives a VGG19 weights file (leangen ships none and
  downloads nothing): a torchvision-layout state dict (``features.<i>.weight`` / ``.bias``; ``classifier.*`` keys
  are ignored), ``.pth``/``.pt`` or ``.safetensors``. The feature stack is built here in plain torch (torchvision is
  not needed). L1 between the features after relu1_1, relu2_1, relu3_1, relu4_1, relu5_1, weighted 1/32, 1/16, 1/8,
  1/4, 1, as SPADE's ``VGGLoss``. Unlike SPADE's code, images are first mapped to the ImageNet normalisation
  torchvision's weights were trained with.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

LAYER_WEIGHTS = (0.25, 0.5, 1.0)

#: VGG19 (configuration "E"): conv widths, "M" = 2x2 max-pool. In torchvision's ``features`` every conv is followed
#: by a ReLU and both take an index, so the state dict's conv indices are 0, 2, 5, 7, 10, ..., 34.
VGG19_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
                                    512, 512, 512, 512, "M")
#: ``features`` indices just after relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 (slice ends, SPADE's VGG19 slices)
VGG19_TAPS = (2, 7, 12, 21, 30)
VGG19_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class InceptionPerceptual(nn.Module):
    """``(output, target)`` float ``[B, 3, H, W]`` in [-1, 1] -> scalar loss (gradients flow to ``output``)."""

    def __init__(self, device: str | torch.device = "cpu", weights: str | os.PathLike | None = None) -> None:
        super().__init__()
        from leangen.metrics.inception import load_inception

        # Not registered as a submodule: the frozen trunk is shared with the metrics and never saved in snapshots.
        self._net = [load_inception(device, weights).net]

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        n = self._net[0]
        x = n.Conv2d_2b_3x3(n.Conv2d_2a_3x3(n.Conv2d_1a_3x3(x)))
        f1 = x
        x = n.Conv2d_4a_3x3(n.Conv2d_3b_1x1(F.max_pool2d(x, 3, stride=2)))
        f2 = x
        x = F.max_pool2d(x, 3, stride=2) if min(x.shape[-2:]) >= 3 else x
        x = n.Mixed_5d(n.Mixed_5c(n.Mixed_5b(x)))
        return [f1, f2, x]

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            real = self.features(target.float())
        fake = self.features(output.float())
        return sum(w * (f - r).abs().mean() for w, f, r in zip(LAYER_WEIGHTS, fake, real))  # type: ignore[return-value]


def vgg19_features() -> nn.Sequential:
    """VGG19's convolutional ``features`` stack with torchvision's module indices (randomly initialised)."""
    layers: list[nn.Module] = []
    cin = 3
    for v in VGG19_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU()]
            cin = int(v)
    return nn.Sequential(*layers)


def load_vgg19_features(path: str | os.PathLike) -> nn.Sequential:
    """``vgg19_features()`` with the weights of ``path`` (a torchvision VGG19 state dict, full model or features
    only); ``ValueError`` naming the file when it is unreadable or is not VGG19's layout."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many types (pickle, zip, EOF...); all mean "not a weights file"
        raise ValueError(f"{path}: not a readable VGG19 state dict ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a VGG19 state dict (a {type(state).__name__}, expected a dict of tensors)")
    net = vgg19_features()
    expected = {f"features.{k}": v for k, v in net.state_dict().items()}
    found = {k: v for k, v in state.items() if isinstance(k, str) and k.startswith("features.")}
    missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    wrong = [k for k in expected if k in found and (not isinstance(found[k], torch.Tensor)
                                                    or tuple(found[k].shape) != tuple(expected[k].shape))]
    if missing or extra or wrong:
        what = [f"missing {', '.join(missing[:3])}" if missing else "",
                f"unexpected {', '.join(extra[:3])}" if extra else "",
                f"wrong shape for {', '.join(wrong[:3])}" if wrong else ""]
        raise ValueError(f"{path}: not a torchvision-layout VGG19 state dict (" + "; ".join(w for w in what if w)
                         + ")")
    net.load_state_dict({k[len("features."):]: v.float() for k, v in found.items()})
    return net


class VGG19Perceptual(nn.Module):
    """``(output, target)`` float ``[B, 3, H, W]`` in [-1, 1] -> scalar loss (gradients flow to ``output``); the
    frozen VGG19 of ``weights`` (see the module docstring)."""

    def __init__(self, weights: str | os.PathLike, device: str | torch.device = "cpu") -> None:
        super().__init__()
        # only up to relu5_1: the deeper layers are never used
        self.net = load_vgg19_features(weights)[:VGG19_TAPS[-1]].to(device).eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1), persistent=False)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = ((x.float() + 1) / 2 - self.mean) / self.std  # [-1, 1] -> ImageNet normalisation
        feats, start = [], 0
        for end in VGG19_TAPS:
            x = self.net[start:end](x)
            feats.append(x)
            start = end
        return feats

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            real = self.features(target)
        fake = self.features(output)
        return sum(w * (f - r).abs().mean() for w, f, r in zip(VGG19_WEIGHTS, fake, real))  # type: ignore[return-value]


def build_perceptual(net: str, weights: str | os.PathLike | None, device: str | torch.device) -> nn.Module:
    """The perceptual loss ``net`` (``inception`` | ``vgg19``); ``weights``: the VGG19 file (required for vgg19;
    for inception, an optional TF-Inception weights path)."""
    if net == "inception":
        return InceptionPerceptual(device, weights)
    if net == "vgg19":
        if not weights:
            raise ValueError("perceptual_net=vgg19 needs perceptual_weights=PATH (a torchvision VGG19 state dict); "
                             "leangen downloads nothing")
        return VGG19Perceptual(weights, device)
    raise ValueError(f"unknown perceptual_net {net!r}: expected inception or vgg19")
