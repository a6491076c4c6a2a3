"""``leangen translate``: label maps -> images with a translator (ASAP-Net, pix2pixHD-style, SPADE, conv), or
images -> images with an image-input translator (CycleGAN's ``G_A``: ``model.input_kind == "image"``).

Every input is checked first (its header before any pixel is decoded: pixel count, mode; label maps: indexed or
greyscale PNG, ids below the model's number of classes; images: any image file; both: a size the model takes, as
its ``check_input_size`` declares; no two inputs with one name; no output over an input); only then are images
written, ``OUT/<name>.png`` for ``<name>.<ext>`` in the input, each batch as soon as it is translated.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import click
import torch

from leangen.cli.common import execution_options, fail, load_model, note_kept
from leangen.execution import ExecutionPolicy


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
@execution_options(precision=True, compile=True)
def command(network: str, input_path: str, outdir: str, grid: bool, batch: int, policy: ExecutionPolicy) -> None:
    """Translate label maps (or, for CycleGAN-style models, images) into images: OUT/<name>.png per input.

    \b
    Examples:
      leangen translate --network runs/00002-asapnet-tiny32-openmoji-seg-32-n64 --input labels/ --outdir out
      leangen translate --network saved/asapnet --input labels/0001.png --outdir out
      leangen translate --network saved/asapnet --input labels/ --device cuda --precision bf16 --outdir out
      leangen translate --network runs/00003-cyclegan-tiny32-openmoji-faces2animals-32-n32 --input faces/ --outdir out
    """
    import numpy as np
    from PIL import Image

    from leangen.models.base import image_grid, to_uint8

    model = load_model(network, policy, ("translator",), "leangen translate")
    click.get_current_context().with_resource(policy.autocast())  # the precision of every forward below
    out = Path(outdir)
    try:
        files = _input_files(Path(input_path), model.input_kind == "image", out)
        if model.input_kind == "image":
            groups = _read_images(files, model)
        else:
            groups = _read_label_maps(files, model)
    except ValueError as e:
        fail(str(e))
    if grid and len(groups) > 1:
        fail("--grid needs inputs of one size; these have " + ", ".join(f"{w}x{h}" for h, w in groups))
    out.mkdir(parents=True, exist_ok=True)
    note_kept(f"Images written before the error stay in {out}")
    done, all_images = 0, []
    for (h, w), items in groups.items():
        for i in range(0, len(items), batch):  # written as they come: an error or Ctrl-C keeps what is done
            chunk = items[i:i + batch]
            try:
                images = model.translate(torch.from_numpy(np.stack([m for _, m in chunk])), batch_size=batch)
            except (RuntimeError, ValueError) as e:
                why = (str(e).strip().splitlines() or [type(e).__name__])[0]
                fail(f"translating the {w}x{h} input(s) failed: {why}")
            if tuple(images.shape[-2:]) != (h, w):  # never write an image of another size than its input
                fail(f"{model.model_type} turned a {w}x{h} input into {images.shape[-1]}x{images.shape[-2]}; it "
                     f"cannot translate inputs of this size")
            for (name, _), im in zip(chunk, images):
                Image.fromarray(to_uint8(im).permute(1, 2, 0).numpy()).save(out / f"{name}.png")
            done += len(chunk)
            if grid:
                all_images.append(images)
    if grid:
        Image.fromarray(np.ascontiguousarray(image_grid(torch.cat(all_images)))).save(out / "grid.png")
    sizes = ", ".join(f"{w}x{h}" for h, w in groups)
    click.echo(f"wrote {done} image(s) ({sizes}) to {out}" + (" + grid.png" if grid else ""))


Groups = dict[tuple[int, int], list[tuple[str, "np.ndarray"]]]


def _input_files(path: Path, images: bool, out: Path) -> list[Path]:
    """The input files (a file, or a folder's PNGs, or its images for image-input models), sorted; ``ValueError``
    when two share a name (``face.png`` + ``face.jpg`` would both become ``face.png``) or an output would land on an
    input (``--outdir`` equal to ``--input``)."""
    from leangen.data._images import is_image_name
    from leangen.data.paired import label_map_files

    if images:
        files = sorted(p for p in path.iterdir() if p.is_file() and is_image_name(p.name)) if path.is_dir() else [path]
        if not files:
            raise ValueError(f"no images in {path}")
    else:
        files = label_map_files(path)
    if path.is_dir() and out.resolve() == path.resolve():
        raise ValueError(f"--outdir {out} is the input folder: the outputs would replace the inputs; choose another")
    seen: dict[str, Path] = {}
    for f in files:
        if f.stem in seen:
            raise ValueError(f"{seen[f.stem]} and {f} would both be written as {f.stem}.png; rename one of them")
        seen[f.stem] = f
        if (out / f"{f.stem}.png").resolve() == f.resolve():
            raise ValueError(f"the output for {f} would overwrite it; choose another --outdir")
    return files


def _check_size(model: torch.nn.Module, f: Path, h: int, w: int) -> None:
    try:
        model.check_input_size(h, w)  # type: ignore[operator]
    except ValueError as e:
        raise ValueError(f"{f}: {e}") from None


def _read_label_maps(files: list[Path], model: torch.nn.Module) -> Groups:
    """Label maps ``int [H, W]`` by size; ``ValueError`` naming the file for ids the model does not know or a size
    it does not take."""
    from leangen.data.paired import read_label_map

    k = int(model.num_classes)  # type: ignore[arg-type]
    groups: Groups = defaultdict(list)
    for f in files:
        m = read_label_map(f)
        _check_size(model, f, *m.shape)
        if m.size and (m.min() < 0 or m.max() >= k):
            raise ValueError(f"{f}: label ids must be in 0..{k - 1} for this model, found {m.min()}..{m.max()}")
        groups[m.shape].append((f.stem, m))
    return groups


def _read_images(files: list[Path], model: torch.nn.Module) -> Groups:
    """RGB images as uint8 ``[3, H, W]`` by size; ``ValueError`` naming the file when it is unreadable, too large to
    decode or of a size the model does not take."""
    import numpy as np

    from leangen.data._images import read_image

    groups: Groups = defaultdict(list)
    for f in files:
        rgb = read_image(f, rgb=True)
        h, w = rgb.shape[:2]
        _check_size(model, f, h, w)
        groups[(h, w)].append((f.stem, np.ascontiguousarray(rgb.transpose(2, 0, 1))))
    return groups
