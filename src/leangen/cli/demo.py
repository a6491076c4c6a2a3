"""``leangen demo``: the end-to-end job on built-in data, sized for a 2-core CPU.

First the model zoo (trained weights shipped with leangen, ``leangen.zoo``): a sample grid of each generator,
translations of a few validation label maps (or images) by each translator and the bits/dim of each likelihood model
on a slice of the validation split, in seconds. Then it builds the OpenMoji dataset, trains a tiny generator with FID
at every snapshot, writes a sample grid and prints a profile table — all through the same verbs a user runs by hand.
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


#: Validation items translated, and validation images scored for bits/dim, per zoo model (seconds on a CPU).
ZOO_TRANSLATIONS, ZOO_BPD_IMAGES = 8, 64


def _zoo_generator(model: Any, out: Path) -> str:
    from PIL import Image

    from leangen.models.images import image_grid

    Image.fromarray(image_grid(model.generate(range(64), output_type="pt"), ncols=8)).save(out)
    return "64 samples, seeds 0-63"


def _zoo_translator(model: Any, data: str, out: Path) -> str:
    """Translations of the first validation items, each row ``label | output | target`` (paired) or ``A | G(A)``."""
    from PIL import Image

    from leangen.models.images import image_grid
    from leangen.models.pretrained import capability
    from leangen.tasks import task_for_model

    task = task_for_model(model)
    td = task.open(data, capability(model, "img_resolution"))
    inputs = task.preview_inputs(td, ZOO_TRANSLATIONS)
    batch = inputs["batch"]
    if task.name == "unpaired":
        outputs, what = model.translate(batch.image, output_type="pt"), "A | translation"
    else:
        extra = {"instances": batch.instances} if batch.instances is not None and capability(
            model, "instance_edge") else {}
        outputs, what = model.translate(batch.condition, output_type="pt", **extra), "label map | output | target"
    grid = task.preview_grid(outputs, inputs, td)
    per_item = len(grid) // len(batch)
    Image.fromarray(image_grid(grid, ncols=2 * per_item)).save(out)
    return f"{len(batch)} validation {'images' if task.name == 'unpaired' else 'label maps'} translated ({what})"


def _zoo_likelihood(model: Any, data: str, device: Any, out: Path) -> str:
    """bits/dim on the first ``ZOO_BPD_IMAGES`` validation images (the record goes to ``out``, JSON)."""
    import warnings

    from leangen.metrics.registry import calc_metrics
    from leangen.tasks import open_eval_data

    dataset = open_eval_data(data, model, "val")
    name = f"bpd{ZOO_BPD_IMAGES}"
    with warnings.catch_warnings():  # a validation split smaller than the slice: the record says so
        warnings.simplefilter("ignore")
        (record,) = calc_metrics([name], model, dataset, device=device, split="val", progress=False)
    out.write_text(json.dumps(record, indent=1, default=str) + "\n")
    n = record["protocol"]["num_images"]
    return f"{record['results'][name]:.3f} bits/dim on the first {n} validation images of {data}"


def zoo_demo(outdir: Path, device: Any) -> list[Path]:
    """Write each zoo model's demo output into ``outdir`` and print where; returns the files written. An entry that
    fails (damaged weights, missing data package) is reported and passed over."""
    from leangen import zoo

    if not zoo.available():
        click.echo(f"      the model zoo is empty ({zoo.root()}): no trained weights in this install; going on")
        return []
    entries = []
    for name in zoo.available():
        try:
            entries.append((name, zoo.card(name)))
        except ValueError as e:  # an unreadable card: the other entries still show
            click.echo(f"      {name}: skipped ({e})")
    order = {"unconditional": 0, "paired": 1, "unpaired": 2, "likelihood": 3}  # samples first, bits/dim last
    entries.sort(key=lambda e: (order.get(e[1].get("task"), 4), e[0]))
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, card in entries:
        t = time.time()
        try:
            model = zoo.load(name, device=device)
            kind = model.kind
            if kind == "generator":
                out = outdir / f"{name}-samples.png"
                what = _zoo_generator(model, out)
            elif kind == "translator":
                out = outdir / f"{name}-translations.png"
                what = _zoo_translator(model, card["data"], out)
            elif kind == "likelihood":
                out = outdir / f"{name}-bpd.json"
                what = _zoo_likelihood(model, card["data"], device, out)
                samples = zoo.path(name) / zoo.SAMPLES_NAME
                what += f"; samples: {samples}" if samples.is_file() else ""
            else:
                click.echo(f"      {name}: a {kind}, nothing to show")
                continue
        except (OSError, ValueError, KeyError, ModuleNotFoundError) as e:
            click.echo(f"      {name}: skipped ({e})")
            continue
        written.append(out)
        click.echo(f"      {name} ({card.get('data', '?')}, {time.time() - t:.1f} s): {what}\n        -> {out}")
    return written


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
@click.option("--no-train", "--zoo-only", "no_train", is_flag=True,
              help="Stop after the zoo part (outputs of the trained models shipped with leangen).")
@device_option
def command(outdir: str, preset: str, kimg: float, evals: int, metric: str, no_train: bool, device: Any) -> None:
    """Show the trained models shipped with leangen (samples, translations, bits/dim), then train a tiny generator
    on OpenMoji, evaluate it, sample a grid and profile it.

    \b
    Examples:
      leangen demo --no-train               # the zoo part only: seconds
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
    zoo_dir = Path(outdir) / "zoo-demo"
    click.echo(f"[0/4] the model zoo: trained models shipped with leangen (leangen models --zoo), outputs in {zoo_dir}")
    zoo_demo(zoo_dir, device)
    click.echo(f"      zoo part done in {time.time() - t0:.0f} s")
    if no_train:
        return
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
