"""Official CIPS-skip checkpoints (saic-mdal/CIPS ``train.py --Generator=CIPSskip``; the same ``CIPSskip`` class in
BlingHe/PixelFolder's ``GeneratorsCIPS``) -> ``CIPSGenerator``.

Key correspondence (the tensors carry over unchanged):

- mapping ``style.{1..n}.*`` -> ``mapping.net.{1..n}.*``;
- learned Fourier features ``lff.ffm.conv.{weight,bias}`` (a plain ``Conv2d(2, hidden, 1)``) -> ``lff.*``;
- coordinate embedding ``emb.input`` [1, hidden, R, R] -> ``emb.input``;
- 1x1 styled layers ``conv1.*``, ``linears.{0..2P-1}.*`` and ``to_rgbs.{0..P-1}.*`` (no upsampling, so no kernel
  buffers) -> same names.

The configuration comes from the shapes: ``style_dim`` and mapping depth from ``style.*``, ``hidden_size`` from
``lff``, the resolution R from the embedding (the official code builds ``P = log2(R) - 1`` layer pairs), and the
channel multiplier from the last pair's width when ``R >= 64``. The official eval-mode forward resamples the
embedding with ``grid_sample(align_corners=False)`` even at the native grid, so the converted model is built with
``embedding_sampling="official_eval"`` (option ``embedding_sampling=table`` gives the raw table instead, which is what
official training mode uses). CIPS stores no fixed noise: ``noise_const`` is the model's own seeded draw.
``CIPSres`` checkpoints (``to_rgb_last``, residual blocks) are a different architecture and are refused.
"""
from __future__ import annotations

import math

import torch

from leangen.convert import Format, register_format
from leangen.convert.common import ConversionError, Options, StateReader, fill
from leangen.convert.rosinality import (FRESH_NOISE_NOTE, LR_MLP_OPTION, NOISE_SEED, infer_channel_multiplier,
                                        mapping_shape, take_mapping, take_styled_conv, take_to_rgb)


def detect(state: dict[str, torch.Tensor]) -> bool:
    return "emb.input" in state and "lff.ffm.conv.weight" in state and "conv1.conv.weight" in state \
        and "style.1.weight" in state


def convert(reader: StateReader, opts: Options) -> tuple[torch.nn.Module, list[str]]:
    from leangen.models.cips import EMBEDDING_SAMPLING, CIPSGenerator, cips_widths

    if reader.has("to_rgb_last.bias"):
        raise ConversionError(f"{reader.source}: tensor 'to_rgb_last.bias' belongs to CIPSres (residual variant), "
                              f"which leangen does not implement; only CIPSskip checkpoints convert")
    sampling = str(opts.get("embedding_sampling", "official_eval"))
    if sampling not in EMBEDDING_SAMPLING:
        raise ConversionError(f"cips option embedding_sampling={sampling!r}: use one of "
                              f"{', '.join(EMBEDDING_SAMPLING)}")
    z_dim, w_dim, n_mlp = mapping_shape(reader)
    hidden = reader.shape("lff.ffm.conv.weight")[0]
    emb = reader.shape("emb.input")
    if len(emb) != 4 or emb[0] != 1 or emb[2] != emb[3]:
        raise ConversionError(f"{reader.source}: tensor 'emb.input' has shape {list(emb)}, CIPS's coordinate "
                              f"embedding is [1, hidden, R, R]")
    resolution = emb[-1]
    log_size = int(math.log2(resolution)) if resolution > 0 else 0
    if 2 ** log_size != resolution or not 8 <= resolution <= 1024:
        raise ConversionError(f"{reader.source}: tensor 'emb.input' is {resolution}x{resolution}, not a CIPS "
                              f"resolution (a power of two in 8..1024)")
    pairs = log_size - 1
    cm = infer_channel_multiplier(reader, f"to_rgbs.{pairs - 1}.conv.weight", resolution, axis=2) \
        if resolution >= 64 else 2
    lr_mlp = float(opts.get("lr_mlp", 0.01))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(NOISE_SEED)  # the noise_const buffers (not in the checkpoint) are the model's seeded draw
        G = CIPSGenerator(resolution=resolution, z_dim=z_dim, w_dim=w_dim, mapping_layers=n_mlp,
                          mapping_lr_mul=lr_mlp, hidden_size=hidden, channel_multiplier=cm,
                          embedding_sampling=sampling)  # type: ignore[arg-type]
    widths = cips_widths(resolution, cm)

    out: dict[str, torch.Tensor] = {}
    take_mapping(reader, out, z_dim, w_dim, n_mlp)
    out["lff.weight"] = reader.take("lff.ffm.conv.weight", (hidden, 2, 1, 1))
    out["lff.bias"] = reader.take("lff.ffm.conv.bias", (hidden,))
    out["emb.input"] = reader.take("emb.input", (1, hidden, resolution, resolution))
    take_styled_conv(reader, "conv1", "conv1", out, 2 * hidden, widths[0], 1, w_dim)
    in_ch = widths[0]
    for i, width in enumerate(widths):
        take_styled_conv(reader, f"linears.{2 * i}", f"linears.{2 * i}", out, in_ch, width, 1, w_dim)
        take_styled_conv(reader, f"linears.{2 * i + 1}", f"linears.{2 * i + 1}", out, width, width, 1, w_dim)
        take_to_rgb(reader, f"to_rgbs.{i}", f"to_rgbs.{i}", out, width, w_dim, upsample=False)
        in_ch = width
    noise_keys = ["conv1.noise.noise_const"] + [f"linears.{j}.noise.noise_const" for j in range(2 * pairs)]
    fill(G, out, reader.source, keep=["mapping.w_avg", *noise_keys])
    changes = [
        "keys renamed: style.* -> mapping.net.*, lff.ffm.conv.* -> lff.*; all other names kept",
        (f"embedding_sampling='official_eval': the coordinate embedding is resampled with grid_sample(bilinear, "
         f"border, align_corners=False) at every grid, the native one included, as the official eval-mode forward"
         if sampling == "official_eval" else
         "embedding_sampling='table': the raw embedding at the native grid (the official training-mode input), "
         "not the official eval-mode resampling"),
        FRESH_NOISE_NOTE,
    ]
    if resolution < 64:
        changes.append("channel multiplier not stored at this resolution (all widths 512): recorded as 2")
    return G, changes


register_format(Format(
    name="cips", description="CIPS-skip (saic-mdal/CIPS train.py --Generator=CIPSskip: g_ema)",
    detect=detect, convert=convert, has_mapping=True,
    options={**LR_MLP_OPTION,
             "embedding_sampling": "official_eval (default: the official eval-mode grid_sample of the embedding) or "
                                   "table (the raw table at the native grid)"}))
