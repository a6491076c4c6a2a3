"""``leangen dataset``: create StyleGAN-format dataset zips and inspect datasets."""
from __future__ import annotations

import json
import sys
import warnings
from typing import Any

import click

from leangen.cli.common import fail

# What a bad source or argument raises in leangen.data; anything else is a bug and keeps its traceback.
_USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, ModuleNotFoundError, PermissionError, OSError)


def _human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover


@click.group(name="dataset", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
def command() -> None:
    """Create and inspect datasets (folders, zips, built-in OpenMoji).

    \b
    Examples:
      leangen dataset create --source openmoji --dest data/openmoji-32.zip --resolution 32
      leangen dataset create --source photos/ --dest data/photos-64.zip --resolution 64
      leangen dataset info data/openmoji-32.zip
    """


@command.command("create", short_help="Write a StyleGAN-format dataset zip from a folder, zip or openmoji.")
@click.option("--source", required=True, metavar="DIR|ZIP|openmoji",
              help="Folder of images (searched recursively), a zip of images, or the built-in name 'openmoji'.")
@click.option("--dest", required=True, type=click.Path(dir_okay=False), metavar="X.zip",
              help="Output zip (written atomically; an existing file is replaced only on success).")
@click.option("--resolution", type=click.IntRange(min=1), default=None, metavar="R",
              help="Output side in pixels; images are centre-cropped and resized to R x R. "
                   "[default: keep the source size, which must be uniform; required for openmoji]")
@click.option("--on-error", type=click.Choice(["skip", "stop"]), default="skip", show_default=True,
              help="Unreadable/truncated image: skip it with a warning, or stop without writing anything.")
@click.option("--max-images", type=click.IntRange(min=1), default=None, metavar="N",
              help="Write at most N images (openmoji: a fixed random subset of N glyphs).")
@click.option("--resize-filter", type=click.Choice(["lanczos", "box", "bicubic"]), default="lanczos",
              show_default=True, help="Downscaling filter (box reproduces StyleGAN's paper FIDs on FFHQ-256).")
@click.option("--transform", type=click.Choice(["center-crop"]), default="center-crop", show_default=True,
              help="How non-square images become square.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def create(source: str, dest: str, resolution: int | None, on_error: str, max_images: int | None,
           resize_filter: str, transform: str, as_json: bool) -> None:
    """Write a StyleGAN-format dataset zip (00000/img00000000.png ..., dataset.json).

    Images become RGB (transparency on white), are centre-cropped to a square and resized. dataset.json records
    labels (carried over from a source dataset.json), the source and, for OpenMoji, its CC BY-SA attribution.

    \b
    Examples:
      leangen dataset create --source openmoji --dest data/openmoji-64.zip --resolution 64
      leangen dataset create --source openmoji --dest data/om-32-small.zip --resolution 32 --max-images 500
      leangen dataset create --source ~/photos --dest data/photos-128.zip --resolution 128 --resize-filter box
      leangen dataset create --source raw.zip --dest data/clean-256.zip --resolution 256 --on-error stop
    """
    from leangen.data.create import create_dataset

    bar = None
    state = {"done": 0}

    def progress(done: int, total: int | None) -> None:
        nonlocal bar
        if bar is None and total and sys.stderr.isatty():
            bar = click.progressbar(length=total, label="writing", file=sys.stderr)
            bar.__enter__()
        if bar is not None:
            bar.update(done - state["done"])
        state["done"] = done

    try:
        # Skipped files are reported from the summary below; the library's warnings would repeat them.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            summary = create_dataset(source, dest, resolution, on_error=on_error,  # type: ignore[arg-type]
                                     max_images=max_images, resize_filter=resize_filter,  # type: ignore[arg-type]
                                     transform=transform, progress=progress)  # type: ignore[arg-type]
    except _USER_ERRORS as e:
        fail(str(e))
        return
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    r = summary["resolution"]
    n = summary["count"]
    click.echo(f"wrote {summary['dest']}: {n} image{'s' if n != 1 else ''}, {r}x{r}, "
               f"{_human_bytes(summary['bytes'])} in {summary['seconds']:.1f} s")
    if summary["skipped"]:
        click.echo(f"skipped {len(summary['skipped'])} file(s):", err=True)
        for s in summary["skipped"]:
            click.echo(f"  {s['file']}: {s['error']}", err=True)


@command.command("create-pairs", short_help="Write a paired (label map -> image) dataset folder.")
@click.option("--dest", required=True, type=click.Path(), metavar="DIR", help="New output folder.")
@click.option("--labels", type=click.Path(exists=True, file_okay=False), default=None, metavar="DIR",
              help="Label maps: class-id PNGs, or RGB colour-coded with --palette; names match --images.")
@click.option("--images", type=click.Path(exists=True, file_okay=False), default=None, metavar="DIR",
              help="Target images, one per label map (same name, same size).")
@click.option("--ab", type=click.Path(exists=True, file_okay=False), default=None, metavar="DIR",
              help="pix2pix side-by-side pairs instead: each image is A (colour-coded labels) | B (target).")
@click.option("--palette", type=click.Path(exists=True, dir_okay=False), default=None, metavar="FILE.json",
              help="Label colours, [[r,g,b], ...] or {\"classes\": [...], \"palette\": [...]}, ids in order.")
@click.option("--instances", type=click.Path(exists=True, file_okay=False), default=None, metavar="DIR",
              help="Optional instance maps: integer instance-id PNGs, one per pair (same names, same size); "
                   "models with an instance-edge input see where the ids change.")
def create_pairs(dest: str, labels: str | None, images: str | None, ab: str | None, palette: str | None,
                 instances: str | None) -> None:
    """Check label map -> image pairs and write them as a paired folder (labels/, images/, dataset.json with the
    classes and palette) that `leangen train --data DIR` reads. Nothing is written unless every pair is valid.

    \b
    Examples:
      leangen dataset create-pairs --labels facades/labels --images facades/photos --palette facades.json \\
        --dest data/facades
      leangen dataset create-pairs --labels city/labelIds --images city/photos --instances city/instanceIds \
        --dest data/cityscapes
      leangen dataset create-pairs --ab pix2pix/facades/train --palette facades.json --dest data/facades-ab
    """
    from leangen.data.paired_folders import load_pair_sources, write_pairs

    try:
        ds = load_pair_sources(labels=labels, images=images, ab=ab, palette=palette, instances=instances)
        out = write_pairs(ds, dest, sources={"labels": labels, "images": images, "ab": ab, "palette": palette,
                                             "instances": instances})
    except _USER_ERRORS as e:
        fail(str(e))
        return
    h, w = ds.images.shape[2:]
    click.echo(f"wrote {out}: {len(ds)} pairs of {w}x{h}, {ds.num_classes} classes"
               + (", instance maps" if ds.instances is not None else ""))


@command.command("info", short_help="Describe a dataset: count, resolution, labels, size, attribution.")
@click.argument("path", type=click.Path(), metavar="PATH")
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON.")
def info(path: str, as_json: bool) -> None:
    """Describe a dataset zip or folder: image count, resolution, channels, labels, size, metadata, attribution.

    Reads image headers only, so it is quick even for large datasets.

    \b
    Examples:
      leangen dataset info data/openmoji-32.zip
      leangen dataset info ~/photos --json
    """
    from leangen.data.create import dataset_info

    try:
        d = dataset_info(path)
    except _USER_ERRORS as e:
        fail(str(e))
        return
    if as_json:
        click.echo(json.dumps(d, indent=2, ensure_ascii=False))
        return
    if d["resolution"] is not None:
        res = f"{d['resolution']}x{d['resolution']}"
    else:
        res = "mixed: " + ", ".join(f"{k} ({v})" for k, v in list(d["sizes"].items())[:5]) if d["sizes"] else "-"
    labels = "none"
    if d["labels"]:
        labels = f"yes ({d['label_dim']} classes/dims)" if d["label_dim"] else "yes"
    rows = [
        ("path", d["path"]),
        ("format", d["format"]),
        ("images", str(d["count"])),
        ("resolution", res),
        ("channels", str(d["channels"]) if d["channels"] is not None else ", ".join(d["modes"])),
        ("labels", labels),
        ("size", _human_bytes(d["size_bytes"])),
    ]
    if d["attribution"]:
        rows.append(("attribution", d["attribution"]))
    for k, v in rows:
        click.echo(f"{k + ':':<13}{v}")
    shown = {k: v for k, v in d["metadata"].items() if k != "attribution"}
    if shown:
        click.echo("metadata:")
        for k, v in shown.items():
            click.echo(f"  {k}: {json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v}")
    if d["unreadable"]:
        names = ", ".join(d["unreadable"][:5]) + (" ..." if len(d["unreadable"]) > 5 else "")
        click.echo(f"unreadable:  {len(d['unreadable'])} ({names})", err=True)
