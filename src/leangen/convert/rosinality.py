"""Key scheme of the rosinality-style StyleGAN2 blocks, shared by the StyleGAN2, PixelFolder and CIPS checkpoints.

Official names -> leangen names (the tensors themselves carry over unchanged: both store equalized-lr weights raw
and scale them at run time):

- mapping ``style.{1..n}.{weight,bias}`` -> ``mapping.net.{1..n}.*`` (index 0 is PixelNorm in both);
- styled conv ``X.conv.{weight,modulation.weight,modulation.bias}``, ``X.noise.weight``, ``X.activate.bias`` -> same;
- ToRGB ``X.conv.*``, ``X.bias`` -> same; the constant ``X.upsample.kernel`` / ``X.conv.blur.kernel`` buffers are
  checked against the [1, 3, 3, 1] blur leangen computes, then dropped.
"""
from __future__ import annotations

import re

import torch

from leangen.convert.common import ConversionError, StateReader


#: The option every style-generator format accepts (the mapping's learning-rate multiplier changes its function).
LR_MLP_OPTION = {"lr_mlp": "learning-rate multiplier of the mapping network the checkpoint was trained with (0.01)"}
#: Seed of the constant-noise buffers of formats whose checkpoints store no fixed noise (PixelFolder, CIPS).
NOISE_SEED = 0
FRESH_NOISE_NOTE = (f"no fixed noise in the checkpoint (the official layers draw fresh noise per call): noise_const is "
                    f"the model's own draw (seed {NOISE_SEED}); noise_mode='random' samples as the official code does")


def blur_kernel(taps: tuple[int, ...] = (1, 3, 3, 1), factor: int = 2) -> torch.Tensor:
    """The buffer the official upsampling layers store: outer(taps) normalized to sum 1, times factor²."""
    k = torch.tensor(taps, dtype=torch.float32)
    k = torch.outer(k, k)
    return k / k.sum() * factor ** 2


def mapping_shape(reader: StateReader) -> tuple[int, int, int]:
    """``(z_dim, w_dim, layers)`` of the official mapping network ``style.{1..n}``."""
    idx = sorted(int(m.group(1)) for k in reader.state if (m := re.fullmatch(r"style\.(\d+)\.weight", k)))
    if not idx or idx != list(range(1, len(idx) + 1)):
        raise ConversionError(f"{reader.source}: no mapping network style.1..style.N in the checkpoint "
                              f"(found indices {idx})")
    w_dim, z_dim = reader.shape("style.1.weight")
    return z_dim, w_dim, len(idx)


def take_mapping(reader: StateReader, out: dict[str, torch.Tensor], z_dim: int, w_dim: int, layers: int) -> None:
    for i in range(1, layers + 1):
        fan_in = z_dim if i == 1 else w_dim
        out[f"mapping.net.{i}.weight"] = reader.take(f"style.{i}.weight", (w_dim, fan_in))
        out[f"mapping.net.{i}.bias"] = reader.take(f"style.{i}.bias", (w_dim,))


def take_modconv(reader: StateReader, src: str, dst: str, out: dict[str, torch.Tensor], in_ch: int, out_ch: int,
                 kernel: int, w_dim: int) -> None:
    """``src.{weight, modulation.weight, modulation.bias}`` of a modulated conv."""
    out[f"{dst}.weight"] = reader.take(f"{src}.weight", (1, out_ch, in_ch, kernel, kernel))
    out[f"{dst}.modulation.weight"] = reader.take(f"{src}.modulation.weight", (in_ch, w_dim))
    out[f"{dst}.modulation.bias"] = reader.take(f"{src}.modulation.bias", (in_ch,))


def take_styled_conv(reader: StateReader, src: str, dst: str, out: dict[str, torch.Tensor], in_ch: int, out_ch: int,
                     kernel: int, w_dim: int, upsample: bool = False) -> None:
    """A ``StyledConv``: modulated conv (+ its blur kernel when upsampling), noise strength, activation bias."""
    take_modconv(reader, f"{src}.conv", f"{dst}.conv", out, in_ch, out_ch, kernel, w_dim)
    if upsample:
        reader.take_constant(f"{src}.conv.blur.kernel", blur_kernel())
    out[f"{dst}.noise.weight"] = reader.take(f"{src}.noise.weight", (1,))
    out[f"{dst}.activate.bias"] = reader.take(f"{src}.activate.bias", (out_ch,))


def take_to_rgb(reader: StateReader, src: str, dst: str, out: dict[str, torch.Tensor], in_ch: int, w_dim: int,
                upsample: bool) -> None:
    """A ``ToRGB`` (modulated 1x1 without demodulation, bias, and the skip upsampler's kernel when it has one)."""
    take_modconv(reader, f"{src}.conv", f"{dst}.conv", out, in_ch, 3, 1, w_dim)
    out[f"{dst}.bias"] = reader.take(f"{src}.bias", (1, 3, 1, 1))
    if upsample:
        reader.take_constant(f"{src}.upsample.kernel", blur_kernel())


def infer_channel_multiplier(reader: StateReader, key: str, resolution: int, axis: int = 1) -> int:
    """The StyleGAN2 channel multiplier that gives the width of ``key`` (a layer at ``resolution`` ≥ 64)."""
    from leangen.ops.channels import stylegan2_channels

    width = reader.shape(key)[axis]
    for cm in (1, 2, 4):
        if stylegan2_channels(cm)[resolution] == width:
            return cm
    raise ConversionError(f"{reader.source}: {key!r} has {width} channels, which no StyleGAN2 channel multiplier "
                          f"(1, 2, 4) gives at {resolution}x{resolution}")
