"""``leangen demo``: the end-to-end job on built-in data, sized for a 2-core CPU.

Builds the OpenMoji dataset, trains a tiny generator with FID at every snapshot, writes a sample grid and prints a
profile table — all through the same verbs a user runs by hand.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from leangen.cli.common import device_option, fail


def _run_verb(module: str, args: list[str]) -> None:
    import importlib

    cmd = importlib.import_module(module).command
    click.echo(f"\n$ leangen {cmd.name} {' '.join(args)}")
    try:
        cmd.main(args=args, prog_name=f"leangen {cmd.name}", standalone_mode=False)
    except click.ClickException as e:
        fail(e.format_message())


@click.command(name="demo", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--outdir", default="runs", show_default=True, metavar="DIR", help="Where the run directory goes.")
@click.option("--preset", default="stylegan2-tiny32", show_default=True, help="Tiny preset to train.")
@click.option("--kimg", type=click.FloatRange(min=0, min_open=True), default=16.0, show_default=True,
              help="Training length (about 17 s per kimg for stylegan2-tiny32 on 2 CPU cores).")
@click.option("--evals", type=click.IntRange(min=2), default=4, show_default=True,
              help="Number of metric evaluations, evenly spaced over the run.")
@click.option("--metrics", "--metric", "metric", default="fid200", show_default=True,
              help="Metric at each evaluation (fid200: 200 generated vs 200 real images; biased at small n, "
                   "so compare values within this run only).")
@device_option
def command(outdir: str, preset: str, kimg: float, evals: int, metric: str, device: Any) -> None:
    """Train a tiny generator on OpenMoji, evaluate it, sample a grid and profile it.

    \b
    Examples:
      leangen demo                          # about 10 minutes on 2 CPU cores
      leangen demo --kimg 4 --evals 2       # a quick look
      leangen demo --preset pixelfolder-tiny32 --kimg 30
    """
    from leangen.presets import get_preset

    try:
        res = get_preset(preset).resolution
    except KeyError as e:
        fail(e.args[0])
    t0 = time.time()
    click.echo(f"[1/4] built-in dataset: OpenMoji rendered at {res}x{res} (cached after the first run)")
    from leangen.data.dataset import open_dataset

    ds = open_dataset("openmoji", resolution=res)
    click.echo(f"      {len(ds)} images; {getattr(ds, 'attribution', '')}")

    click.echo(f"[2/4] training {preset} for {kimg:g} kimg with {metric} at {evals} evaluations")
    tick = kimg / evals
    _run_verb("leangen.cli.train", ["--preset", preset, "--data", "openmoji", "--outdir", outdir, "--kimg", str(kimg),
                                    "--tick", f"{tick:g}", "--snap", "1", "--keep", "2", "--metrics", metric,
                                    "--device", str(device), "--grid", "64"])
    from leangen.runs import latest_snapshot

    runs = sorted(p for p in Path(outdir).iterdir() if p.is_dir() and (p / "training_options.json").is_file())
    run_dir = runs[-1]
    records = []
    metric_file = run_dir / f"metric-{metric}.jsonl"
    if metric_file.is_file():
        records = [json.loads(line) for line in metric_file.read_text().splitlines() if line.strip()]
    values = [(r.get("kimg"), r["results"][metric]) for r in records if metric in r.get("results", {})]

    click.echo("[3/4] sampling a grid from the EMA generator")
    import leangen
    from PIL import Image

    from leangen.models.base import image_grid

    G = leangen.load(latest_snapshot(run_dir) or run_dir)
    grid = Image.fromarray(image_grid(G.generate(range(64), output_type="pt"), ncols=8))
    grid_path = run_dir / "demo-grid.png"
    grid.save(grid_path)

    click.echo("[4/4] profile (CPU, batch 1)")
    _run_verb("leangen.cli.profile", [preset, "--device", "cpu", "--batch", "1", "--repeats", "5"])

    click.echo(f"\nrun directory : {run_dir}")
    click.echo(f"sample grid   : {grid_path}  (fakes*.png: grids over training; curves.png: losses)")
    for k, v in values:
        click.echo(f"{metric:<14s}: {v:8.2f}  at {k} kimg")
    if len(values) >= 2:
        first, last = values[0][1], values[-1][1]
        click.echo(f"{metric} {'fell' if last < first else 'did not fall'}: {first:.2f} -> {last:.2f}")
    click.echo(f"total time    : {time.time() - t0:.0f} s")
