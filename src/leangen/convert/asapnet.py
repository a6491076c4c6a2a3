"""tamarott/ASAPNet generator checkpoints (``latest_net_G.pth``: a flat generator state dict) -> ``ASAPNet``.

The official low-res stream is one ``nn.Sequential`` (``lowres_stream.model.{i}``) whose indices depend on the
options: with reflection (or replication) padding every conv stage takes three slots (pad, conv+norm, ReLU), with zero
padding two; the ``lr_depth`` blocks are ``{i}.conv_block.{1|0}.{0,1}`` (conv, affine instance norm) and the last
index is the 1x1 head. The per-pixel MLP has no tensors: its shape only shows in the head's output count.

Read from the shapes: padding layout (index pattern), input channels, ``lr_width``, ``lr_max_width``, ``lr_depth``,
the learned downsampling S2 (number of strided convs), and, given ``hr_width``/``hr_depth`` (default 64/5), the MLP
input width, which fixes the tile size S (``4 log2 S`` coordinate channels) and ``lr_instance`` (the MLP input is the
low-res input minus one channel when set). Not readable: how the low-res input splits into labels and the instance
edge, reflection vs replication, the aspect ratio; they come from options (``dataset=facades|cityscapes`` sets the
released configurations) or default to the common case, and every option is checked against the shapes.
"""
from __future__ import annotations

import re
from typing import Any

import torch

from leangen.convert import Format, register_format
from leangen.convert.common import ConversionError, Options, StateReader, fill

PREFIX = "lowres_stream.model."

#: The official dataset hooks and test scripts of the released checkpoints (facades 512/1024, cityscapes 256x512).
#: Facades' crop size is left to the shapes: both 512 and 1024 models were released.
DATASETS: dict[str, dict[str, Any]] = {
    "facades": dict(label_nc=13, contain_dontcare_label=False, instance_edge=False, lr_instance=False,
                    reflection_pad=True, aspect_ratio=1),
    "cityscapes": dict(label_nc=35, contain_dontcare_label=False, instance_edge=True, lr_instance=True,
                       reflection_pad=False, aspect_ratio=2, crop_size=512),
}

OPTIONS = {
    "dataset": "facades | cityscapes: the released checkpoints' settings (explicit options override them)",
    "label_nc": "label classes without the don't-care class (default: read as low-res inputs minus the edge channel)",
    "contain_dontcare_label": "the label maps had a don't-care class (one more one-hot channel, id label_nc)",
    "instance_edge": "an instance-edge channel was appended to the labels (official: not --no_instance_edge)",
    "lr_instance": "the per-pixel MLP does not see the last input channel (read from the shapes; checked)",
    "reflection_pad": "reflection padding in the low-res stream (read from the layer indices; checked)",
    "replicate_pad": "replication padding in the low-res stream (same layer indices as reflection)",
    "crop_size": "training crop width (checked: tile S = crop_size // (16 * aspect_ratio))",
    "aspect_ratio": "training width/height ratio (integer; default 1)",
    "learned_ds_factor": "learned downsampling S2 (read from the strided convs; checked)",
    "lr_width": "low-res stream width (read; checked)", "lr_max_width": "low-res widest layer (read; checked)",
    "lr_depth": "low-res conv blocks (read; checked)",
    "hr_width": "per-pixel MLP width (default 64)", "hr_depth": "per-pixel MLP layers (default 5)",
}


def detect(state: dict[str, torch.Tensor]) -> bool:
    return any(k.startswith(PREFIX) for k in state)


def _option_values(opts: Options) -> dict[str, Any]:
    """The options given, over the ``dataset`` preset's values."""
    values = {k: v for k, v in opts.values.items() if k != "dataset"}
    name = opts.get("dataset")
    if name is None:
        return values
    if str(name).lower() not in DATASETS:
        raise ConversionError(f"asapnet: unknown dataset {name!r} (known: {', '.join(DATASETS)})")
    return {**DATASETS[str(name).lower()], **values}


def _groups(reader: StateReader) -> tuple[list[int], list[int]]:
    """Indices of the conv stages (``{i}.0.*``/``{i}.1.*``) and blocks (``{i}.conv_block.*``) in the Sequential."""
    stages, blocks = set(), set()
    for key in reader.state:
        m = re.match(re.escape(PREFIX) + r"(\d+)\.(.+)$", key)
        if m is None:
            continue  # not ours: finish() names it
        i, rest = int(m.group(1)), m.group(2)
        if rest.startswith("conv_block."):
            blocks.add(i)
        elif rest.split(".")[0] in ("0", "1"):
            stages.add(i)
    return sorted(stages), sorted(blocks)


def _check_layout(reader: StateReader, stages: list[int], blocks: list[int], off: int, slot: int,
                  padded: bool) -> None:
    """The stages sit every ``slot`` indices from ``off``, the blocks right after them: a gap means a conv whose
    tensors are all missing, named by its first tensor."""
    want = [off + slot * s for s in range(len(stages))]
    if stages != want:
        reader.shape(f"{PREFIX}{next(i for i in want if i not in stages)}.0.weight")
    start = slot * len(stages)
    if blocks and blocks[0] > start:  # the last strided conv is gone: the blocks start a stage later
        reader.shape(f"{PREFIX}{off + slot * len(stages)}.0.weight")
    want_blocks = list(range(start, start + len(blocks)))
    if blocks != want_blocks:
        inner = 1 if padded else 0
        reader.shape(f"{PREFIX}{next(i for i in want_blocks if i not in blocks)}.conv_block.{inner}.0.weight")


def _mlp_inputs(params: int, width: int, depth: int) -> int | None:
    """The MLP input width c0 for which an MLP ``[c0, width x (depth-1), 3]`` has ``params`` weights + biases."""
    first = width if depth > 1 else 3
    rest = (depth - 2) * (width * width + width) + (width * 3 + 3) if depth > 1 else 0
    c0, left = divmod(params - first - rest, first)
    return c0 if left == 0 and c0 > 0 else None


def convert(reader: StateReader, opts: Options) -> tuple[torch.nn.Module, list[str]]:
    from leangen.models.asapnet import ASAPNet

    src = reader.source
    o = _option_values(opts)

    def contradiction(name: str, read: Any, shows: str | None = None) -> None:
        if name in o and o[name] is not None and o[name] != read:
            given = f"{name}={o[name]!r}" if name in opts else \
                f"dataset={opts.get('dataset')} (sets {name}={o[name]!r})"
            raise ConversionError(f"{src}: option {given} contradicts the checkpoint, whose shapes give "
                                  f"{shows or f'{name}={read!r}'}")

    if any(k.endswith(".weight_orig") for k in reader.state):
        first = next(k for k in reader.state if k.endswith(".weight_orig"))
        raise ConversionError(f"{src}: {first!r} is spectrally normalised (norm_G=spectral...); only the ASAP-Net "
                              f"default norm_G=instanceaffine is supported")
    # Padding layout: zero padding puts the first conv at index 0, a padding layer pushes it to 1.
    if reader.has(PREFIX + "0.0.weight"):
        padded, off, slot = False, 0, 2
    elif reader.has(PREFIX + "1.0.weight"):
        padded, off, slot = True, 1, 3
    else:
        reader.shape(PREFIX + "0.0.weight")  # raises: names the missing first conv
        raise AssertionError("unreachable")
    stages, blocks = _groups(reader)
    n_stages, depth = len(stages), len(blocks)
    _check_layout(reader, stages, blocks, off, slot, padded)
    n_down = n_stages - 1
    # Reflection and replication pads take the same slots: the options tell them apart (reflection by default).
    replicate = padded and bool(o.get("replicate_pad", False))
    reflect = padded and not replicate
    if not padded:
        contradiction("reflection_pad", False)
        contradiction("replicate_pad", False)
    elif replicate and o.get("reflection_pad"):
        raise ConversionError(f"{src}: options reflection_pad and replicate_pad both set: choose one")
    elif not replicate:
        contradiction("reflection_pad", True, "a padding layer before every conv (reflection_pad or replicate_pad)")

    # Widths and depths from the shapes.
    lr_width, lr_in = reader.shape(PREFIX + f"{off}.0.weight")[:2]
    lr_max = reader.shape(PREFIX + f"{off + slot * n_down}.0.weight")[0] if n_down else lr_width
    head_idx = slot * n_stages + depth
    head = reader.shape(PREFIX + f"{head_idx}.weight")
    if len(head) != 4 or head[2:] != (1, 1):
        raise ConversionError(f"{src}: tensor {PREFIX}{head_idx}.weight has shape {list(head)}, the final 1x1 conv "
                              f"of the low-res stream needs [P, {lr_max}, 1, 1]")
    n_params = head[0]
    for name, read in (("lr_width", lr_width), ("lr_max_width", lr_max), ("lr_depth", depth),
                       ("learned_ds_factor", 2 ** n_down)):
        contradiction(name, read)

    # The MLP: its input width fixes S and lr_instance (4 log2 S coordinate channels are a multiple of 4).
    hr_width, hr_depth = int(o.get("hr_width", 64)), int(o.get("hr_depth", 5))
    if hr_width < 1 or hr_depth < 1:
        raise ConversionError(f"{src}: hr_width={hr_width} and hr_depth={hr_depth} must be at least 1")
    c0 = _mlp_inputs(n_params, hr_width, hr_depth)
    extra = None if c0 is None else c0 - lr_in
    if extra is None or extra < 3 or extra % 4 not in (0, 3):
        raise ConversionError(f"{src}: the final conv {PREFIX}{head_idx}.weight predicts {n_params} MLP parameters, "
                              f"which no [inputs, {hr_width} x {hr_depth - 1}, 3] MLP over these {lr_in} low-res "
                              f"inputs plus 4·log2(S) coordinates has — give --option hr_width=... hr_depth=...")
    lr_instance = extra % 4 == 3
    tile = 2 ** ((extra + int(lr_instance)) // 4)
    contradiction("lr_instance", lr_instance)
    if tile % 2 ** n_down:
        raise ConversionError(f"{src}: the MLP's coordinates give a tile S={tile}, smaller than the learned "
                              f"downsampling S2={2 ** n_down} of the {n_down} strided convs")
    aspect_opt = o.get("aspect_ratio", 1)
    if float(aspect_opt) != int(float(aspect_opt)) or int(float(aspect_opt)) < 1:
        raise ConversionError(f"{src}: aspect_ratio={aspect_opt!r}: leangen's ASAP-Net needs an integer ratio")
    aspect = int(float(aspect_opt))
    if o.get("crop_size") is not None and int(o["crop_size"]) // (16 * aspect) != tile:
        raise ConversionError(f"{src}: option crop_size={o['crop_size']} (aspect {aspect}) contradicts the "
                              f"checkpoint, whose MLP input gives a tile S={tile} (crop_size {16 * tile * aspect})")

    # Labels vs instance edge: only options tell; the default is the common case (edge <=> lr_instance).
    dontcare = bool(o.get("contain_dontcare_label", False))
    if o.get("label_nc") is not None:
        classes = int(o["label_nc"]) + int(dontcare)
        edge = lr_in - classes
        if edge not in (0, 1):
            raise ConversionError(f"{src}: option label_nc={o['label_nc']}{' (+1 dontcare)' if dontcare else ''} "
                                  f"contradicts the checkpoint: {PREFIX}{off}.0.weight takes {lr_in} input channels "
                                  f"(labels + an optional instance edge)")
        contradiction("instance_edge", bool(edge))
        edge_read = "split read from label_nc"
    else:
        edge = int(bool(o.get("instance_edge", lr_instance)))
        classes = lr_in - edge
        edge_read = "instance_edge given" if "instance_edge" in o else \
            "edge channel assumed iff lr_instance; --option label_nc=... settles it"
    if classes < 1 + int(lr_instance and not edge):
        raise ConversionError(f"{src}: {PREFIX}{off}.0.weight takes {lr_in} input channels: too few for the labels")

    G = ASAPNet(num_classes=classes, resolution=16 * tile, aspect=aspect, downsampling=tile, learned_ds=2 ** n_down,
                lr_width=lr_width, lr_max_width=lr_max, lr_depth=depth, hr_width=hr_width, hr_depth=hr_depth,
                instance_edge=bool(edge), reflection_pad=reflect, init_gain=0.02, lr_instance=lr_instance,
                replicate_pad=replicate)

    out: dict[str, torch.Tensor] = {}

    def conv_norm(official: str, ours: str, cin: int, cout: int) -> None:
        out[f"{ours}.0.weight"] = reader.take(f"{official}.0.weight", (cout, cin, 3, 3))
        out[f"{ours}.1.weight"] = reader.take(f"{official}.1.weight", (cout,))
        out[f"{ours}.1.bias"] = reader.take(f"{official}.1.bias", (cout,))

    cin = lr_in
    for s in range(n_stages):  # stage s: official index off + slot*s -> lr_stream.{2s} (ReLUs take the odd slots)
        cout = lr_max if s == n_down and n_down else lr_width
        conv_norm(f"{PREFIX}{off + slot * s}", f"lr_stream.{2 * s}", cin, cout)
        cin = cout
    inner = 1 if padded else 0  # inside a block, the padding layer takes slot 0
    for b in range(depth):
        conv_norm(f"{PREFIX}{slot * n_stages + b}.conv_block.{inner}", f"lr_stream.{2 * (n_stages + b)}", cin, cin)
    out["head.weight"] = reader.take(f"{PREFIX}{head_idx}.weight", (G.params_per_tile, cin, 1, 1))
    out["head.bias"] = reader.take(f"{PREFIX}{head_idx}.bias", (G.params_per_tile,))
    fill(G, out, src)

    pad_name = "reflection" if reflect else "replication" if replicate else "zero"
    labels = f"{classes} labels" + (f" (id {classes - 1} = don't care)" if dontcare else "")
    edge_text = ("instance edge " + ("to the low-res stream only" if lr_instance else "to both streams")
                 if edge else "no instance edge" + (" (MLP drops the last label channel, as the official code does)"
                                                     if lr_instance else ""))
    changes = [
        f"configuration read: {labels}, {edge_text} [{edge_read}], {pad_name} padding, tile S={tile} "
        f"(fixed x{tile >> n_down} · learned x{2 ** n_down}), low-res widths {lr_width}/{lr_max} with {depth} "
        f"blocks, per-pixel MLP {G.hr_channels}",
        "keys renamed: lowres_stream.model.{i} (conv+norm per stage, padding layers dropped) -> lr_stream.{2j}; the "
        "final 1x1 conv -> head (padding layers become the convs' padding_mode)",
        "positional encoding recomputed for every input size (the official generator caches the first call's)",
    ]
    return G, changes


register_format(Format(
    name="asapnet", description="tamarott/ASAPNet generator (latest_net_G.pth; --option dataset=facades|cityscapes)",
    detect=detect, convert=convert, options=OPTIONS))
