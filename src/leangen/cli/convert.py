"""``leangen convert``: an official checkpoint (PixelFolder, CIPS, rosinality StyleGAN2, StyleNAT, ASAP-Net) ->
a leangen model folder (``config.json`` + ``model.safetensors``) that computes the official inference function."""
from __future__ import annotations

import time
from typing import Any

import click
import torch

from leangen.cli.common import device_option, fail

FORMAT_NAMES = ("auto", "pixelfolder", "cips", "stylegan2", "stylenat", "asapnet")


@click.command(name="convert", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.argument("checkpoint", type=click.Path(dir_okay=False), required=False)
@click.option("--from", "fmt", type=click.Choice(FORMAT_NAMES), default="auto", show_default=True,
              help="Format of the checkpoint (auto: recognised from its tensor names).")
@click.option("--out", default=None, type=click.Path(file_okay=False), metavar="DIR",
              help="Folder for the converted model (load it with leangen.load or --network DIR).")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
              help="A format option the shapes cannot tell (repeatable); --list-options shows them.")
@click.option("--entry", default=None, metavar="NAME",
              help="Which entry of the checkpoint dict to read (default: g_ema, else g, else the file itself).")
@click.option("--w-avg-samples", type=click.IntRange(min=1, max=10_000_000), default=10_000, show_default=True,
              help="Style generators: z samples for the w average used by truncation (the files store none).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of those z samples.")
@click.option("--overwrite", is_flag=True, help="Replace the model already in --out (never a training run).")
@click.option("--list-options", is_flag=True, help="Print every format's options and exit.")
@device_option
def command(checkpoint: str | None, fmt: str, out: str | None, options: tuple[str, ...], entry: str | None,
            w_avg_samples: int, seed: int, overwrite: bool, list_options: bool, device: torch.device) -> None:
    """Convert an official checkpoint into a leangen model folder.

    Files are read with torch.load(weights_only=True): no pickled code runs, and a file that needs it is refused.
    Every tensor is mapped by name and checked against the configuration read from the shapes; an unknown, partial
    or mismatched checkpoint, or one with NaN/inf values, stops with one line naming the first offending tensor.
    --out must be a new folder (--overwrite replaces a converted model; a training run is never written into).

    \b
    Examples:
      leangen convert 550000.pt --from pixelfolder --out models/pixelfolder-ffhq-256
      leangen convert stylegan2-ffhq-config-f.pt --out models/sg2-ffhq-1024
      leangen convert FFHQ256_940k_flip.pt --from stylenat --out models/stylenat-ffhq-256
      leangen convert latest_net_G.pth --from asapnet --option dataset=facades --out models/asap-facades
      leangen generate --network models/pixelfolder-ffhq-256 --seeds 0-7 --trunc 0.7 --outdir out
    """
    from leangen.convert import ConversionError, convert_to_directory, formats

    if list_options:
        for name, spec in formats().items():
            click.echo(f"{name}: {spec.description}")
            for key, text in spec.options.items():
                click.echo(f"  --option {key}=...  {text}")
        return
    if checkpoint is None or out is None:
        fail("give the checkpoint file and --out DIR (see leangen convert --help)")
    t0 = time.perf_counter()
    try:
        path = convert_to_directory(checkpoint, out, None if fmt == "auto" else fmt, list(options), entry,
                                    w_avg_samples=w_avg_samples, seed=seed, overwrite=overwrite, device=device)
    except ConversionError:
        raise  # one line through the CLI's error handler
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    import json

    record: dict[str, Any] = json.loads((path / "config.json").read_text())
    conv = record["converted_from"]
    click.echo(f"converted {checkpoint} ({conv['format']}, entry {conv['entry']}) -> {path} "
               f"({record['model_type']}, {time.perf_counter() - t0:.1f} s)")
    for change in conv["changes"]:
        click.echo(f"  - {change}")
    w_avg = conv.get("w_avg")
    if w_avg:
        click.echo(f"  - w_avg {w_avg['from']}" if "from" in w_avg else
                   f"  - w_avg estimated from {w_avg['estimated_from_z']} z (seed {w_avg['seed']})")
