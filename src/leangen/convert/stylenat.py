"""SHI-Labs StyleNAT checkpoints (``FFHQ256_940k_flip.pt``, the FFHQ-1024 one; ``g_ema``) -> ``StyleNATGenerator``.

Official names -> leangen names (written from the format facts in the reference notes; no official code reused):

- mapping ``style.{1..n}.*`` -> ``mapping.net.{1..n}.*``; ``input.input`` -> same;
- ``layers.{i}.blocks.{j}.*`` -> ``blocks.{2i+j}.*`` (``norm{1,2}.style``, ``attn.qkv``, ``attn.proj`` unchanged;
  ``mlp.fc1`` / ``mlp.fc2`` -> ``mlp.0`` / ``mlp.2``);
- bias tables: level 0 ``attn.rpb`` (its ``attn.relative_position_index`` buffer is checked against the key-minus-query
  index leangen computes, then dropped); Hydra levels ``attn.rpb.{s}`` -> ``attn.rpb.{s}``, or in the released legacy
  split-head layout ``attn.rpb0`` / ``attn.rpb1`` -> the two head groups — or, where the level has one dilation group
  (8x8, whose single k=7/d=1 group the legacy code duplicates into two halves), one table of all heads;
- ``layers.{i}.upsample.*`` -> ``ups.{i}.*`` (the ``sin_pos_embed._float_tensor`` placeholder is dropped);
- ``to_rgbs.{i}.*`` -> same, with the official placement (``rgb_after_upsample=True``); the skip upsampler's
  ``upsample.kernel`` is checked and dropped.

The configuration comes from the shapes (levels, widths, heads, kernels, MLP ratio, mapping); only the dilations are
not stored: they default to the official FFHQ configs ([1] at 4 and 8, [1, R/8] at level size R) and can be given
as the ``dilations`` option. Official outputs are ImageNet-normalized; ``y = 2 (x * std + mean) - 1`` maps them to
leangen's [-1, 1] and is folded into the ToRGBs: the image is the sum of every ToRGB's output through the linear,
per-channel skip upsampling, so scaling every ToRGB's weight and biases by ``2 * std`` and adding ``2 * mean - 1`` to
the last ToRGB's bias (whose output is not upsampled) is exact.
"""
from __future__ import annotations

import re
from typing import Any

import torch

from leangen.convert import Format, register_format
from leangen.convert.common import ConversionError, Options, StateReader, fill
from leangen.convert.rosinality import LR_MLP_OPTION, blur_kernel, mapping_shape, take_mapping

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def detect(state: dict[str, torch.Tensor]) -> bool:
    return "input.input" in state and "style.1.weight" in state and "layers.0.blocks.0.attn.qkv.weight" in state


def relative_position_index(h: int, w: int) -> torch.Tensor:
    """The level-0 index buffer ``[H*W, H*W]`` (int64): entry ``[query, key]`` is the row-major position of
    ``(ky - qy + H - 1, kx - qx + W - 1)`` in the ``[2H-1, 2W-1]`` table (NATTEN's key-minus-query convention)."""
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    y, x = yy.reshape(-1), xx.reshape(-1)
    return (y[None, :] - y[:, None] + h - 1) * (2 * w - 1) + (x[None, :] - x[:, None] + w - 1)


def parse_dilations(value: Any, levels: int, source: str) -> list[list[int]] | None:
    """The ``dilations`` option: a list of per-level lists, or text ``"1;1;1,2;1,4"`` (levels split by ``;``,
    groups by ``,``); one entry per level 4, 8, ... (the 4x4 entry is ignored: full attention)."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        value = str(value)
    if isinstance(value, str):
        try:
            value = [[int(d) for d in part.split(",")] for part in value.replace(" ", "").split(";")]
        except ValueError:
            raise ConversionError(f"{source}: dilations option {value!r} is not like '1;1;1,2;1,4'") from None
    out = [[int(d) for d in level] for level in value]
    if len(out) != levels:
        raise ConversionError(f"{source}: the dilations option has {len(out)} levels, the checkpoint {levels}")
    return out


def _group_tables(reader: StateReader, attn: str) -> tuple[bool, list[str]]:
    """Whether the level uses the legacy split-head layout, and its bias-table keys in head order."""
    legacy = [f"{attn}.rpb0", f"{attn}.rpb1"]
    current = sorted((k for k in reader.state if re.fullmatch(re.escape(attn) + r"\.rpb\.\d+", k)),
                     key=lambda k: int(k.rsplit(".", 1)[1]))
    if current and any(reader.has(k) for k in legacy):
        raise ConversionError(f"{reader.source}: {attn} has both legacy (rpb0/rpb1) and current (rpb.N) bias tables")
    if current:
        if [int(k.rsplit(".", 1)[1]) for k in current] != list(range(len(current))):
            raise ConversionError(f"{reader.source}: bias tables {current} are not numbered 0..{len(current) - 1}")
        return False, current
    if reader.has(legacy[0]) or reader.has(legacy[1]):
        reader.shape(legacy[0]), reader.shape(legacy[1])  # both halves must be there (names the missing one)
        return True, legacy
    raise ConversionError(f"{reader.source}: tensor {attn + '.rpb.0'!r} is missing (no Hydra bias table, current "
                          f"or legacy {attn}.rpb0)")


def _kernel(reader: StateReader, key: str) -> int:
    """Window size ``k`` of a ``[heads, 2k-1, 2k-1]`` table."""
    shape = reader.shape(key)
    if len(shape) != 3 or shape[1] != shape[2] or shape[1] % 2 == 0:
        raise ConversionError(f"{reader.source}: tensor {key!r} has shape {list(shape)}, not a [heads, 2k-1, 2k-1] "
                              f"bias table")
    return (shape[1] + 1) // 2


def _default_dilations(size: int, groups: int, source: str, key: str) -> list[int]:
    """The official FFHQ configs: one group at 8x8, then dilations [1, R/8]."""
    if groups == 1:
        return [1]
    if groups == 2 and size >= 16:
        return [1, size // 8]
    raise ConversionError(f"{source}: {key} starts {groups} head groups at {size}x{size}; the official configs' "
                          f"dilations do not fit, pass the dilations option")


def convert(reader: StateReader, opts: Options) -> tuple[torch.nn.Module, list[str]]:
    from leangen.models.stylenat import StyleNATGenerator
    from leangen.ops.neighborhood import hydra_head_split

    src = reader.source
    z_dim, w_dim, n_mlp = mapping_shape(reader)
    found = sorted(int(m.group(1)) for k in reader.state
                   if (m := re.fullmatch(r"layers\.(\d+)\.blocks\.0\.norm1\.style\.weight", k)))
    if len(found) < 2 or found != list(range(len(found))):
        raise ConversionError(f"{src}: expected layers.0 .. layers.N (N >= 1) with blocks.0.norm1.style.weight, "
                              f"found levels {found}")
    n = len(found)
    sizes = [2 ** (i + 2) for i in range(n)]
    channels = [reader.shape(f"layers.{i}.blocks.0.norm1.style.weight")[0] // 2 for i in range(n)]
    hidden = reader.shape("layers.0.blocks.0.mlp.fc1.weight")[0]
    mlp_ratio = hidden / channels[0]
    option_dil = parse_dilations(opts.get("dilations"), n, src)

    # Per level: heads, groups (kernel, table keys per leangen group) and dilations.
    heads: list[int] = []
    kernels: list[list[int]] = []
    dilations: list[list[int]] = []
    layout: dict[int, tuple[bool, list[str]]] = {}
    level0 = "layers.0.blocks.0.attn"
    heads.append(reader.shape(f"{level0}.rpb")[0])
    kernels.append([7])
    dilations.append([1])
    for i in range(1, n):
        attn = f"layers.{i}.blocks.0.attn"
        legacy, keys = _group_tables(reader, attn)
        layout[i] = (legacy, keys)
        ks = [_kernel(reader, k) for k in keys]
        counts = [reader.shape(k)[0] for k in keys]
        dil = option_dil[i] if option_dil is not None else \
            _default_dilations(sizes[i], 1 if legacy and sizes[i] == 8 else len(keys), src, attn)
        if legacy and len(dil) == 1:  # the 8x8 halves are one (k, d) group split in two: merge them
            if ks[0] != ks[1]:
                raise ConversionError(f"{src}: {keys[0]} and {keys[1]} have kernels {ks}; one dilation group at "
                                      f"{sizes[i]}x{sizes[i]} needs equal ones")
            ks, counts = ks[:1], [sum(counts)]
        if len(dil) != len(ks):
            raise ConversionError(f"{src}: {attn} has {len(ks)} head groups ({', '.join(keys)}), the dilations give "
                                  f"{len(dil)} at {sizes[i]}x{sizes[i]}")
        if counts != hydra_head_split(sum(counts), len(ks)):
            raise ConversionError(f"{src}: {keys[0]}: heads per group {counts} differ from the Hydra split "
                                  f"{hydra_head_split(sum(counts), len(ks))}")
        heads.append(sum(counts))
        kernels.append(ks)
        dilations.append(dil)
    for i, (c, h) in enumerate(zip(channels, heads)):
        if c % h or int(c * mlp_ratio) != reader.shape(f"layers.{i}.blocks.0.mlp.fc1.weight")[0]:
            raise ConversionError(f"{src}: layers.{i} has {c} channels, {h} heads and MLP width "
                                  f"{reader.shape(f'layers.{i}.blocks.0.mlp.fc1.weight')[0]}: not a StyleNAT layout")
    try:
        G = StyleNATGenerator(resolution=sizes[-1], z_dim=z_dim, w_dim=w_dim, mapping_layers=n_mlp,
                              mapping_lr_mul=float(opts.get("lr_mlp", 0.01)), channels=channels, kernels=kernels,
                              dilations=dilations, heads=heads, mlp_ratio=mlp_ratio, rgb_after_upsample=True)
    except ValueError as e:
        raise ConversionError(f"{src}: the configuration read from the checkpoint does not build: {e}") from None

    out: dict[str, torch.Tensor] = {}
    take_mapping(reader, out, z_dim, w_dim, n_mlp)
    out["input.input"] = reader.take("input.input", (1, channels[0], 4, 4))
    for i, c in enumerate(channels):
        for j in range(2):
            s, d = f"layers.{i}.blocks.{j}", f"blocks.{2 * i + j}"
            for norm in ("norm1", "norm2"):
                out[f"{d}.{norm}.style.weight"] = reader.take(f"{s}.{norm}.style.weight", (2 * c, w_dim))
                out[f"{d}.{norm}.style.bias"] = reader.take(f"{s}.{norm}.style.bias", (2 * c,))
            out[f"{d}.attn.qkv.weight"] = reader.take(f"{s}.attn.qkv.weight", (3 * c, c))
            out[f"{d}.attn.qkv.bias"] = reader.take(f"{s}.attn.qkv.bias", (3 * c,))
            out[f"{d}.attn.proj.weight"] = reader.take(f"{s}.attn.proj.weight", (c, c))
            out[f"{d}.attn.proj.bias"] = reader.take(f"{s}.attn.proj.bias", (c,))
            mlp = int(c * mlp_ratio)
            out[f"{d}.mlp.0.weight"] = reader.take(f"{s}.mlp.fc1.weight", (mlp, c))
            out[f"{d}.mlp.0.bias"] = reader.take(f"{s}.mlp.fc1.bias", (mlp,))
            out[f"{d}.mlp.2.weight"] = reader.take(f"{s}.mlp.fc2.weight", (c, mlp))
            out[f"{d}.mlp.2.bias"] = reader.take(f"{s}.mlp.fc2.bias", (c,))
            if i == 0:
                out[f"{d}.attn.rpb"] = reader.take(f"{s}.attn.rpb", (heads[0], 7, 7))
                reader.take_constant(f"{s}.attn.relative_position_index", relative_position_index(4, 4).float(),
                                     atol=0.0)
                continue
            legacy, keys = layout[i]
            keys = [k.replace("blocks.0.", f"blocks.{j}.", 1) for k in keys]
            merged = legacy and len(kernels[i]) == 1  # legacy 8x8: two half-head tables of one (k, d) group
            counts = hydra_head_split(heads[i], 2 if merged else len(kernels[i]))
            ks = kernels[i] * 2 if merged else kernels[i]
            tables = [reader.take(k, (m, 2 * kk - 1, 2 * kk - 1)) for k, m, kk in zip(keys, counts, ks)]
            if merged:
                tables = [torch.cat(tables)]  # heads are independent: the halves stacked are the one group's table
            for g, t in enumerate(tables):
                out[f"{d}.attn.rpb.{g}"] = t
        if i < n - 1:
            s, d, c2 = f"layers.{i}.upsample", f"ups.{i}", channels[i + 1]
            out[f"{d}.alpha"] = reader.take(f"{s}.alpha", (1,))
            out[f"{d}.norm.weight"] = reader.take(f"{s}.norm.weight", (c,))
            out[f"{d}.norm.bias"] = reader.take(f"{s}.norm.bias", (c,))
            out[f"{d}.reduction.weight"] = reader.take(f"{s}.reduction.weight", (c2, c))
            reader.skip([f"{s}.sin_pos_embed._float_tensor"])  # fairseq-style placeholder, no numeric role
    _take_to_rgbs(reader, out, channels, bool(opts.get("imagenet_normalized", True)))
    fill(G, out, src, keep=["mapping.w_avg"])

    changes = ["keys renamed: style.* -> mapping.net.*, layers.{i}.blocks.{j}.* -> blocks.{2i+j}.* (mlp.fc1/fc2 -> "
               "mlp.0/mlp.2), layers.{i}.upsample.* -> ups.{i}.*",
               "relative_position_index and upsample kernels checked and dropped (leangen computes them); "
               "sin_pos_embed._float_tensor placeholders dropped",
               f"dilations per level (not stored in the checkpoint): {dilations[1:]} at "
               f"{sizes[1:]}" + (" (option)" if option_dil is not None else " (the official FFHQ configs)")]
    if any(legacy for legacy, _ in layout.values()):
        changes.append("legacy split-head bias tables rpb0/rpb1 -> per-group attn.rpb.{g} (merged into one group "
                       "where a level has one dilation group)")
    if opts.get("imagenet_normalized", True):
        changes.append("ImageNet output normalization folded into the ToRGBs: weights and biases x 2*std, last bias "
                       "+ (2*mean - 1), so outputs are in leangen's [-1, 1]")
    return G, changes


def _take_to_rgbs(reader: StateReader, out: dict[str, torch.Tensor], channels: list[int], unnormalize: bool) -> None:
    """``to_rgbs.{i}`` with the official placement (inputs ``C_{i+1}``, the last ``C_{n-1}``), optionally folding
    the ImageNet un-normalization into them (see the module docstring)."""
    n = len(channels)
    rgb_in = channels[1:] + channels[-1:]
    scale = 2 * torch.tensor(IMAGENET_STD) if unnormalize else torch.ones(3)
    for i, c in enumerate(rgb_in):
        s = f"to_rgbs.{i}"
        out[f"{s}.conv.weight"] = reader.take(f"{s}.conv.weight", (3, c, 1, 1)) * scale[:, None, None, None]
        out[f"{s}.conv.bias"] = reader.take(f"{s}.conv.bias", (3,)) * scale
        bias = reader.take(f"{s}.bias", (1, 3, 1, 1)) * scale[None, :, None, None]
        if unnormalize and i == n - 1:  # the one ToRGB whose output reaches the image without upsampling
            bias = bias + (2 * torch.tensor(IMAGENET_MEAN) - 1)[None, :, None, None]
        out[f"{s}.bias"] = bias
        # The official skip upsampler exists on every ToRGB but the last; the first one's never runs (no skip yet),
        # so its buffer is checked when present but not required.
        if i < n - 1 and (i > 0 or reader.has(f"{s}.upsample.kernel")):
            reader.take_constant(f"{s}.upsample.kernel", blur_kernel())


register_format(Format(
    name="stylenat", description="SHI-Labs StyleNAT (main.py: g_ema), current and legacy split-head layouts",
    detect=detect, convert=convert, has_mapping=True,
    options={"dilations": "Hydra dilations per level 4, 8, ..., e.g. '1;1;1,2;1,4;1,8;1,16;1,32' (default: the "
                          "official FFHQ configs, [1] at 8x8 and [1, R/8] at level size R)",
             "imagenet_normalized": "the checkpoint's outputs are ImageNet-normalized, as the official datasets' "
                                    "(true); false keeps its raw outputs",
             **LR_MLP_OPTION}))
