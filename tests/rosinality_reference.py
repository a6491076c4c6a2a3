"""An independent functional forward of the rosinality-style blocks the official StyleGAN2, PixelFolder and CIPS
checkpoints use, written from the format description (``../shared/reference/official_checkpoints.md``), operating
on official state dicts directly. Shared by the conversion tests; no leangen code is used."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def blur_kernel() -> torch.Tensor:
    """The stored upsampling kernel: outer([1, 3, 3, 1]) / 64 * 4."""
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = torch.outer(k, k)
    return k / k.sum() * 4


def mapping(s: dict, z: torch.Tensor, lr_mul: float = 0.01) -> torch.Tensor:
    """PixelNorm, then ``style.{1..n}``: equalized linear (weight·lr_mul/√in, bias·lr_mul), leaky ReLU 0.2 × √2."""
    x = z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + 1e-8)
    i = 1
    while f"style.{i}.weight" in s:
        wt = s[f"style.{i}.weight"]
        x = F.leaky_relu(F.linear(x, wt * lr_mul / math.sqrt(wt.shape[1])) + s[f"style.{i}.bias"] * lr_mul, 0.2)
        x, i = x * math.sqrt(2), i + 1
    return x


def upfirdn(x: torch.Tensor, kernel: torch.Tensor, up: int, pad: tuple[int, int]) -> torch.Tensor:
    """upfirdn2d: zero insertion by ``up``, padding, depthwise convolution with the flipped kernel."""
    b, c, h, w = x.shape
    if up > 1:
        z = x.new_zeros(b, c, h * up, w * up)
        z[:, :, ::up, ::up] = x
        x = z
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    return F.conv2d(x, torch.flip(kernel, [0, 1])[None, None].repeat(c, 1, 1, 1), groups=c)


def modconv(s: dict, p: str, x: torch.Tensor, w: torch.Tensor, demod: bool = True, up: bool = False) -> torch.Tensor:
    """Modulated conv ``p.{weight, modulation.*}`` (weight scaled by 1/√(in·k²)); ``up``: transposed conv, stride 2,
    then the stored ``p.blur.kernel`` with padding (1, 1)."""
    wt = s[f"{p}.weight"]
    _, cout, cin, k, _ = wt.shape
    style = F.linear(w, s[f"{p}.modulation.weight"] / math.sqrt(w.shape[1]), s[f"{p}.modulation.bias"])
    weight = wt / math.sqrt(cin * k * k) * style[:, None, :, None, None]
    if demod:
        weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8)[:, :, None, None, None]
    b = x.shape[0]
    xs = x.reshape(1, b * cin, *x.shape[2:])
    if up:
        out = F.conv_transpose2d(xs, weight.transpose(1, 2).reshape(b * cin, cout, k, k), stride=2, groups=b)
        return upfirdn(out.reshape(b, cout, *out.shape[2:]), s[f"{p}.blur.kernel"], 1, (1, 1))
    out = F.conv2d(xs, weight.reshape(b * cout, cin, k, k), padding=k // 2, groups=b)
    return out.reshape(b, cout, *out.shape[2:])


def styled(s: dict, p: str, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None = None,
           up: bool = False) -> torch.Tensor:
    """StyledConv: modulated conv, ``noise.weight × noise`` (left out when None), fused bias + leaky ReLU × √2."""
    out = modconv(s, f"{p}.conv", x, w, up=up)
    if noise is not None:
        out = out + s[f"{p}.noise.weight"] * noise
    return F.leaky_relu(out + s[f"{p}.activate.bias"].view(1, -1, 1, 1), 0.2) * math.sqrt(2)


def to_rgb(s: dict, p: str, x: torch.Tensor, w: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
    """ToRGB: modulated 1x1 without demodulation + bias; the skip is upsampled with ``p.upsample.kernel`` (up 2,
    padding (2, 1)) when that kernel is stored, else added as is."""
    out = modconv(s, f"{p}.conv", x, w, demod=False) + s[f"{p}.bias"]
    if skip is not None:
        kernel = s.get(f"{p}.upsample.kernel")
        out = out + (upfirdn(skip, kernel, 2, (2, 1)) if kernel is not None else skip)
    return out
