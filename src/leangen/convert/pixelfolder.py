"""Official PixelFolder checkpoints (BlingHe/PixelFolder ``train.py``, generator ``PixelFolder``) ->
``PixelFolderGenerator``.

The leangen model mirrors the official layout (same folds, same stage-0 ``conv_merge`` that the forward never uses,
same latent indices), so the conversion is a renaming:

- mapping ``style.{1..n}.*`` -> ``mapping.net.{1..n}.*``;
- learned constant ``input.input`` -> ``input.input``;
- learned Fourier features ``lffs.{i}.ffm.conv.{weight,bias}`` (a plain ``Conv2d(2, C, 1)``) -> ``lffs.{i}.*``;
- positional branch ``posfolders.{i}.{conv0,conv1,conv_merge}.{0.weight,1.bias}`` -> same names (``conv0`` in
  stage 0 only);
- styled 3x3 convs ``convs.{k}.*`` and ``to_rgbs.{k}.*`` -> same names; every official ToRGB stores the constant
  ``upsample.kernel`` buffer, checked against the [1, 3, 3, 1] blur and dropped.

The configuration comes from the shapes: ``style_dim`` and mapping depth from ``style.*``; the number of stages ``S``
from ``lffs`` / ``posfolders``; the resolution ``R = r0 * 4^(S-1)`` from the constant's size ``r0``; the channel
multiplier from the last stage's Fourier features when ``R >= 64`` (below, every width is 512 and the multiplier does
not matter). The official code derives ``S = log2(R) // 2 - 1`` from the resolution, so other combinations are
refused. PixelFolder stores no fixed noise (its layers draw fresh noise at every call): the converted model's
``noise_const`` buffers are its own seeded draw, and ``noise_mode="random"`` samples like the official code.
"""
from __future__ import annotations

import math
import re

import torch

from leangen.convert import Format, register_format
from leangen.convert.common import ConversionError, Options, StateReader, fill
from leangen.convert.rosinality import (FRESH_NOISE_NOTE, LR_MLP_OPTION, NOISE_SEED, infer_channel_multiplier,
                                        mapping_shape, take_mapping, take_styled_conv, take_to_rgb)

FOLDS_PER_STAGE = 2


def detect(state: dict[str, torch.Tensor]) -> bool:
    return "posfolders.0.conv1.0.weight" in state and "lffs.0.ffm.conv.weight" in state \
        and "style.1.weight" in state


def _stage_count(reader: StateReader) -> int:
    """Number of stages: one past the highest ``lffs.{i}`` / ``posfolders.{i}`` index (a gap is then named as a
    missing tensor by the converter)."""
    idx = [int(m.group(2)) for k in reader.state if (m := re.match(r"(lffs|posfolders)\.(\d+)\.", k))]
    if not idx:
        raise ConversionError(f"{reader.source}: no lffs.0 / posfolders.0 tensors: not a PixelFolder generator")
    return max(idx) + 1


def convert(reader: StateReader, opts: Options) -> tuple[torch.nn.Module, list[str]]:
    from leangen.models.pixelfolder import PixelFolderGenerator
    from leangen.ops.channels import stylegan2_channels

    z_dim, w_dim, n_mlp = mapping_shape(reader)
    stages = _stage_count(reader)
    const = reader.shape("input.input")
    if len(const) != 4 or const[0] != 1 or const[2] != const[3]:
        raise ConversionError(f"{reader.source}: tensor 'input.input' has shape {list(const)}, PixelFolder's learned "
                              f"constant is [1, C, r, r]")
    first_res = const[-1]
    resolution = first_res * 4 ** (stages - 1)
    log_size = int(math.log2(resolution)) if resolution > 0 else 0
    if 2 ** log_size != resolution or not 16 <= resolution <= 1024:
        raise ConversionError(f"{reader.source}: a {first_res}x{first_res} constant and {stages} stages give "
                              f"{resolution}px, not a PixelFolder resolution (a power of two in 16..1024)")
    official_stages = log_size // FOLDS_PER_STAGE - 1
    if stages != official_stages:
        raise ConversionError(f"{reader.source}: {stages} stages (lffs/posfolders) with a {first_res}x{first_res} "
                              f"constant give {resolution}px, where the official PixelFolder builds {official_stages} "
                              f"stages; tensor 'input.input' or the stage tensors do not belong together")
    cm = infer_channel_multiplier(reader, f"lffs.{stages - 1}.ffm.conv.weight", resolution, axis=0) \
        if resolution >= 64 else 2
    lr_mlp = float(opts.get("lr_mlp", 0.01))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(NOISE_SEED)  # the noise_const buffers (not in the checkpoint) are the model's seeded draw
        G = PixelFolderGenerator(resolution=resolution, z_dim=z_dim, w_dim=w_dim, mapping_layers=n_mlp,
                                 mapping_lr_mul=lr_mlp, channel_multiplier=cm)
    table = stylegan2_channels(cm)
    ch = {r: table[max(r, 4)] for r in (2 ** i for i in range(log_size + 1))}

    out: dict[str, torch.Tensor] = {}
    take_mapping(reader, out, z_dim, w_dim, n_mlp)
    out["input.input"] = reader.take("input.input", (1, ch[first_res], first_res, first_res))
    fold_factor = 4 ** FOLDS_PER_STAGE  # channel growth of the two folds
    k = 0  # index of the next styled conv
    for i, r in enumerate(G.stage_resolutions):
        f = r // 4
        out[f"lffs.{i}.weight"] = reader.take(f"lffs.{i}.ffm.conv.weight", (ch[r], 2, 1, 1))
        out[f"lffs.{i}.bias"] = reader.take(f"lffs.{i}.ffm.conv.bias", (ch[r],))
        c1 = ch[f] // fold_factor  # conv1 output: ch[f] channels after two folds
        convs = {"conv1": (c1, ch[r]), "conv_merge": (c1 * fold_factor, 2 * c1 * fold_factor)}
        if i == 0:
            convs = {"conv0": (ch[r], 2 * ch[r]), **convs}
        for name, (cout, cin) in convs.items():
            p = f"posfolders.{i}.{name}"
            out[f"{p}.0.weight"] = reader.take(f"{p}.0.weight", (cout, cin, 1, 1))
            out[f"{p}.1.bias"] = reader.take(f"{p}.1.bias", (cout,))
        in_ch = ch[f]
        for j in range(FOLDS_PER_STAGE):
            res = f * 2 ** j
            width = ch[2 * res]
            take_styled_conv(reader, f"convs.{k}", f"convs.{k}", out, in_ch, width, 3, w_dim)
            take_styled_conv(reader, f"convs.{k + 1}", f"convs.{k + 1}", out, width // 4, width, 3, w_dim)
            take_to_rgb(reader, f"to_rgbs.{k // 2}", f"to_rgbs.{k // 2}", out, width, w_dim, upsample=True)
            in_ch = width
            k += 2
    noise_keys = [f"convs.{j}.noise.noise_const" for j in range(k)]
    fill(G, out, reader.source, keep=["mapping.w_avg", *noise_keys])
    changes = [
        "keys renamed: style.* -> mapping.net.*, lffs.i.ffm.conv.* -> lffs.i.*; all other names kept",
        "constant ToRGB upsample kernels checked and dropped (leangen computes them)",
        "posfolders.0.conv_merge kept although the official forward never uses it (same layout and parameter count)",
        FRESH_NOISE_NOTE,
    ]
    if resolution < 64:
        changes.append("channel multiplier not stored at this resolution (all widths 512): recorded as 2")
    return G, changes


register_format(Format(
    name="pixelfolder", description="PixelFolder (BlingHe/PixelFolder train.py: g_ema)",
    detect=detect, convert=convert, has_mapping=True,
    options=LR_MLP_OPTION))
