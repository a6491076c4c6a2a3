"""``leangen translate``: label maps -> images with a translator (ASAP-Net, pix2pixHD-style, SPADE, conv), or
images -> images with an image-input translator (CycleGAN's ``G_A``: ``model.input_kind == "image"``).

Every input is read and checked first (label maps: indexed/greyscale PNG, ids below the model's number of classes;
images: any RGB image file; both: a size the model takes); only then are images written, ``OUT/<name>.png`` for
``<name>.<ext>`` in the input.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import click
import torch

from leangen.cli.common import device_option, fail, load_model, note_kept


@click.command(name="translate", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--network", required=True, metavar="PATH|PRESET",
              help="Saved model folder, training snapshot, run directory, or a preset name (random weights).")
@click.option("--input", "input_path", required=True, type=click.Path(exists=True), metavar="PNG|DIR",
              help="Label map(s): indexed or greyscale PNGs whose pixel values are class ids (a file, or every "
                   ".png in a folder). For image-to-image models (CycleGAN): RGB images (png, jpg, ...).")
@click.option("--outdir", required=True, type=click.Path(file_okay=False), metavar="DIR",
              help="Where images go, under the input names.")
@click.option("--grid", is_flag=True, help="Also write grid.png (label maps of one size only).")
@click.option("--batch", type=click.IntRange(min=1), default=8, show_default=True, help="Inputs per forward.")
@device_option
def command(network: str, input_path: str, outdir: str, grid: bool, batch: int, device: torch.device) -> None:
    """Translate label maps (or, for CycleGAN-style models, images) into images: OUT/<name>.png per input.

    \b
    Examples:
      leangen translate --network runs/00002-asapnet-tiny32-openmoji-seg-32-n64 --input labels/ --outdir out
      leangen translate --network saved/asapnet --input labels/0001.png --outdir out
      leangen translate --network runs/00003-cyclegan-tiny32-openmoji-faces2animals-32-n32 --input faces/ --outdir out
    """
    import numpy as np
    from PIL import Image

    from leangen.models.base import image_grid, to_uint8

    model = load_model(network, device, ("translator",), "leangen translate")
    try:
        if getattr(model, "input_kind", "labels") == "image":
            groups = _read_images(Path(input_path), 2 ** int(getattr(model, "n_down", 0)))
        else:
            groups = _read_label_maps(Path(input_path), int(model.num_classes), int(getattr(model, "tile", 1)))
    except ValueError as e:
        fail(str(e))
    if grid and len(groups) > 1:
        fail("--grid needs inputs of one size; these have " + ", ".join(f"{w}x{h}" for h, w in groups))
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    note_kept(f"Images written before the error stay in {out}")
    done, all_images = 0, []
    for items in groups.values():
        labels = torch.from_numpy(np.stack([m for _, m in items]))
        images = model.translate(labels, batch_size=batch)
        for (name, _), im in zip(items, images):
            Image.fromarray(to_uint8(im).permute(1, 2, 0).numpy()).save(out / f"{name}.png")
        done += len(items)
        all_images.append(images)
    if grid:
        Image.fromarray(np.ascontiguousarray(image_grid(torch.cat(all_images)))).save(out / "grid.png")
    sizes = ", ".join(f"{w}x{h}" for h, w in groups)
    click.echo(f"wrote {done} image(s) ({sizes}) to {out}" + (" + grid.png" if grid else ""))


Groups = dict[tuple[int, int], list[tuple[str, "np.ndarray"]]]


def _read_label_maps(path: Path, k: int, tile: int) -> Groups:
    """Label maps ``int [H, W]`` by size; ``ValueError`` naming the file for ids >= ``k`` or sides not a multiple
    of ``tile``."""
    from leangen.data.paired import label_map_files, read_label_map

    groups: Groups = defaultdict(list)
    for f in label_map_files(path):
        m = read_label_map(f)
        if m.size and (m.min() < 0 or m.max() >= k):
            raise ValueError(f"{f}: label ids must be in 0..{k - 1} for this model, found {m.min()}..{m.max()}")
        if m.shape[0] % tile or m.shape[1] % tile:
            raise ValueError(f"{f} is {m.shape[1]}x{m.shape[0]}; this model needs sides that are multiples of {tile}")
        groups[m.shape].append((f.stem, m))
    return groups


def _read_images(path: Path, multiple: int) -> Groups:
    """RGB images as uint8 ``[3, H, W]`` by size (a file, or every image in a folder, sorted); ``ValueError``
    naming the file when it is unreadable or its sides are not multiples of ``multiple``."""
    import numpy as np
    from PIL import Image

    from leangen.data._images import is_image_name

    files = sorted(p for p in path.iterdir() if p.is_file() and is_image_name(p.name)) if path.is_dir() else [path]
    if not files:
        raise ValueError(f"no images in {path}")
    groups: Groups = defaultdict(list)
    for f in files:
        try:
            with Image.open(f) as im:
                rgb = np.asarray(im.convert("RGB"))
        except OSError as e:
            raise ValueError(f"{f}: not a readable image ({e})") from None
        h, w = rgb.shape[:2]
        if h % multiple or w % multiple:
            raise ValueError(f"{f} is {w}x{h}; this model needs sides that are multiples of {multiple}")
        groups[(h, w)].append((f.stem, np.ascontiguousarray(rgb.transpose(2, 0, 1))))
    return groups
