"""rosinality ``stylegan2-pytorch`` checkpoints (also PixelFolder's ``GeneratorStyleganv2``) -> ``StyleGAN2Generator``.

The configuration is read from the shapes: mapping width and depth from ``style.*``, resolution from the number of
``to_rgbs``, the channel multiplier from the first layer wider resolutions change. The fixed per-layer noise
``noises.noise_{k}`` becomes each layer's ``noise_const`` (``noise_mode="const"`` reproduces the official
``randomize_noise=False`` samples).
"""
from __future__ import annotations

import re

import torch

from leangen.convert import Format, register_format
from leangen.convert.common import Options, StateReader, fill
from leangen.convert.rosinality import (LR_MLP_OPTION, infer_channel_multiplier, mapping_shape, take_mapping,
                                        take_styled_conv, take_to_rgb)


def detect(state: dict[str, torch.Tensor]) -> bool:
    return "input.input" in state and "conv1.conv.weight" in state and "to_rgb1.bias" in state \
        and "style.1.weight" in state


def convert(reader: StateReader, opts: Options) -> tuple[torch.nn.Module, list[str]]:
    from leangen.models.stylegan2 import StyleGAN2Generator
    from leangen.ops.channels import stylegan2_channels

    z_dim, w_dim, n_mlp = mapping_shape(reader)
    n_rgb = sum(1 for k in reader.state if re.fullmatch(r"to_rgbs\.\d+\.bias", k))
    resolution = 2 ** (n_rgb + 2)
    cm = infer_channel_multiplier(reader, f"to_rgbs.{n_rgb - 1}.conv.weight", resolution, axis=2) \
        if resolution >= 64 else 2
    G = StyleGAN2Generator(resolution=resolution, z_dim=z_dim, w_dim=w_dim, mapping_layers=n_mlp,
                           mapping_lr_mul=float(opts.get("lr_mlp", 0.01)), channel_multiplier=cm)
    ch = stylegan2_channels(cm)
    out: dict[str, torch.Tensor] = {}
    take_mapping(reader, out, z_dim, w_dim, n_mlp)
    out["input.input"] = reader.take("input.input", (1, ch[4], 4, 4))
    take_styled_conv(reader, "conv1", "conv1", out, ch[4], ch[4], 3, w_dim)
    take_to_rgb(reader, "to_rgb1", "to_rgb1", out, ch[4], w_dim, upsample=False)
    noises = [("conv1", 4)]
    in_ch = ch[4]
    for i in range(n_rgb):
        res = 2 ** (i + 3)
        take_styled_conv(reader, f"convs.{2 * i}", f"convs.{2 * i}", out, in_ch, ch[res], 3, w_dim, upsample=True)
        take_styled_conv(reader, f"convs.{2 * i + 1}", f"convs.{2 * i + 1}", out, ch[res], ch[res], 3, w_dim)
        take_to_rgb(reader, f"to_rgbs.{i}", f"to_rgbs.{i}", out, ch[res], w_dim, upsample=True)
        noises += [(f"convs.{2 * i}", res), (f"convs.{2 * i + 1}", res)]
        in_ch = ch[res]
    have_noise = reader.has("noises.noise_0")
    if have_noise:
        for k, (layer, res) in enumerate(noises):
            out[f"{layer}.noise.noise_const"] = reader.take(f"noises.noise_{k}", (1, 1, res, res))
    fill(G, out, reader.source, keep=["mapping.w_avg"] + ([] if have_noise else
                                                           [f"{layer}.noise.noise_const" for layer, _ in noises]))
    changes = ["keys renamed: style.* -> mapping.net.*, noises.noise_k -> <layer>.noise.noise_const",
               "constant blur kernels checked and dropped (leangen computes them)"]
    if not have_noise:
        changes.append("no fixed noise in the checkpoint: noise_const drawn at random")
    return G, changes


register_format(Format(
    name="stylegan2", description="rosinality stylegan2-pytorch (train.py: g_ema) and PixelFolder's StyleGAN2",
    detect=detect, convert=convert, has_mapping=True,
    options=LR_MLP_OPTION))
