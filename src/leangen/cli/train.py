"""``leangen train``: train a preset on a dataset (single process, or one process per GPU under torchrun)."""
from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from leangen.cli.common import execution_options, fail
from leangen.execution import ExecutionPolicy


def _csv(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    return [] if items in (["none"], []) else items


@click.command(name="train", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--preset", metavar="NAME", help="Model preset (see `leangen models`). [required unless resuming]")
@click.option("--data", metavar="ZIP|DIR|openmoji",
              help="Training images: a dataset zip, an image folder (trainA/ + trainB/ for unpaired presets), or a "
                   "built-in name. [required unless resuming]")
@click.option("--outdir", metavar="DIR", default=None, help="Where run directories go.  [default: runs]")
@click.option("--kimg", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Train until this many thousand real images have been shown.  [default: preset, else 25000]")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Train for this many steps instead of --kimg.")
@click.option("--minutes", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Also stop after this many minutes of wall-clock time in this invocation (final snapshot and "
                   "metrics are written; --resume continues). For equal-time comparisons.")
@click.option("--batch", type=click.IntRange(min=1), default=None, help="Total batch over all processes. [default: preset]")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None, help="Adam learning rate. [default: preset]")
@click.option("--glr", type=click.FloatRange(min=0, min_open=True), default=None, help="G learning rate (overrides --lr).")
@click.option("--dlr", type=click.FloatRange(min=0, min_open=True), default=None, help="D learning rate (overrides --lr).")
@click.option("--r1-gamma", type=click.FloatRange(min=0), default=None, help="R1 regularization weight. [default: preset]")
@click.option("--pl-weight", type=click.FloatRange(min=0), default=None,
              help="Path-length regularization weight (0: off). [default: preset]")
@click.option("--mixing", type=click.FloatRange(0, 1), default=None, help="Style-mixing probability. [default: preset]")
@click.option("--ema-kimg", type=click.FloatRange(min=0), default=None, help="Generator EMA half-life in kimg. [default: preset]")
@click.option("--ema-rampup", type=click.FloatRange(min=0), default=None,
              help="EMA ramp-up: half-life <= kimg seen * this (0: off). [default: off]")
@click.option("--diffaugment", metavar="POLICY", default=None,
              help="DiffAugment policies for D: any of color,translation,cutout, or none. [default: preset]")
@click.option("--mirror/--no-mirror", default=None, help="Random x-flips of the training images. [default: off]")
@click.option("--tick", type=click.FloatRange(min=0, min_open=True), default=None, metavar="KIMG",
              help="Progress line, stats.jsonl and curves.png every KIMG.  [default: 4]")
@click.option("--snap", type=click.IntRange(min=1), default=None, metavar="TICKS",
              help="Snapshot, sample grid and metrics every TICKS ticks.  [default: 10]")
@click.option("--keep", type=click.IntRange(min=1), default=None, metavar="N", help="Keep the last N snapshots. [default: 3]")
@click.option("--metrics", callback=_csv, default=None, metavar="LIST|none",
              help="Metrics at every snapshot, e.g. fid2k,kid2k. [default: none]")
@click.option("--seed", type=int, default=None, help="Random seed.  [default: 0]")
@click.option("--resume", metavar="RUN|SNAPSHOT|latest", default=None,
              help="Continue a run in its own directory (latest: the newest run in --outdir). Weights, optimizers, "
                   "counters, RNG and data order are restored; options not given are taken from the run.")
@click.option("--amp/--no-amp", default=None, help="Same as --precision bf16 / fp32 (kept for older scripts).")
@click.option("--workers", type=click.IntRange(min=0), default=None, help="Data loader worker processes. [default: 0]")
@click.option("--grid", type=click.IntRange(min=1), default=None, metavar="N", help="Images per sample grid. [default: 64]")
@click.option("--hparam", "hparam_items", multiple=True, metavar="KEY=VALUE",
              help="Set any hyper-parameter of the preset's objective (repeatable), with the names used in presets "
                   "and training_options.json: lr=0.001, betas=[0,0.99], gan_weight=0, teacher=runs/00000-... "
                   "The flags --lr, --glr, --dlr, --r1-gamma, --pl-weight, --mixing, --diffaugment are aliases.")
@click.option("--override", "overrides", multiple=True, metavar="ROLE.ARG=VALUE",
              help="Change a constructor argument of a preset component, e.g. G.channel_base=32 (repeatable).")
@click.option("-n", "--dry-run", is_flag=True, help="Print the resolved options as JSON and exit.")
@click.option("--no-progress", is_flag=True, help="No progress bar (it is off anyway when stderr is not a terminal).")
@execution_options(precision=True, na_backend=True)
def command(preset: str | None, data: str | None, outdir: str | None, kimg: float | None, steps: int | None,
            minutes: float | None, batch: int | None, lr: float | None, glr: float | None, dlr: float | None,
            r1_gamma: float | None,
            pl_weight: float | None, mixing: float | None, ema_kimg: float | None, ema_rampup: float | None,
            diffaugment: str | None, mirror: bool | None, tick: float | None, snap: int | None, keep: int | None,
            metrics: list[str] | None, seed: int | None, resume: str | None, amp: bool | None, workers: int | None,
            grid: int | None, hparam_items: tuple[str, ...], overrides: tuple[str, ...], dry_run: bool,
            no_progress: bool, policy: ExecutionPolicy) -> None:
    """Train a model preset on a dataset.

    Writes runs/<id>-<preset>-<data>/ with training_options.json, log.txt, stats.jsonl, TensorBoard events,
    curves.png, reals.png, fakes*.png, metric-*.jsonl and checkpoints/snapshot-*/ (one folder per saved module,
    e.g. G_ema/, G/, D/, loadable with leangen.load; index.json; training_state.pt for exact resume). Ctrl-C
    finishes the step, writes a snapshot and exits; a second Ctrl-C aborts without one.

    \b
    Examples:
      # single process (CPU or one GPU)
      leangen train --preset stylegan2-tiny32 --data openmoji --kimg 200 --mirror
      leangen train --preset stylegan2-256 --data data/ffhq-256.zip --metrics fid50k_full
    \b
      # 8 GPUs on one node: the batch is split over the processes
      torchrun --nproc_per_node 8 -m leangen train --preset stylegan2-256 --data data/ffhq-256.zip --batch 64
    \b
      # continue a run (same directory, bit-exact on CPU); --kimg raises the target
      leangen train --resume runs/00003-stylegan2-tiny32-openmoji-32
      leangen train --resume latest --kimg 500
    \b
      # a wall-clock budget (e.g. to compare models at equal training time)
      leangen train --preset pixelfolder-tiny32 --data openmoji --minutes 8 --metrics fid500,kid500
    \b
      # other tasks: a likelihood model (bits/dim), a translator (label map -> glyph), a distilled student,
      # unpaired translation (CycleGAN; --data also takes a folder with trainA/ and trainB/)
      leangen train --preset independent-pixels-32 --data openmoji --kimg 20
      leangen train --preset conv-translator-tiny32 --data openmoji-seg --kimg 20
      leangen train --preset cyclegan-tiny32 --data openmoji-faces2animals --kimg 2
      leangen train --preset stylegan2-tiny32-student --data openmoji --hparam teacher=runs/00000-stylegan2-tiny32-openmoji-32
    \b
      # check what would run
      leangen train --preset stylegan2-tiny64 --data openmoji --dry-run
    """
    from leangen.runs import IncompatibleCheckpointError
    from leangen.train.options import TrainOptions, parse_hparam, parse_override, read_run_options, resolve_options

    hparams: dict[str, Any] = {}
    explicit_precision = (click.get_current_context().get_parameter_source("precision")
                          is not click.core.ParameterSource.DEFAULT)
    for key, value in (("lr", lr), ("g_lr", glr), ("d_lr", dlr), ("r1_gamma", r1_gamma), ("pl_weight", pl_weight),
                       ("style_mixing", mixing), ("diffaugment", diffaugment)):
        if value is not None:
            hparams[key] = value
    for text in hparam_items:
        try:
            key, value = parse_hparam(text)
        except ValueError as e:
            fail(str(e))
            return
        hparams[key] = value
    model_overrides: dict[str, dict[str, Any]] = {}
    for text in overrides:
        try:
            role, key, value = parse_override(text)
        except ValueError as e:
            fail(str(e))
            return
        model_overrides.setdefault(role, {})[key] = value
    if policy.na_backend is not None:
        for role in _attention_roles(preset, resume, outdir):
            model_overrides.setdefault(role, {})["na_backend"] = policy.na_backend
    if diffaugment is not None:
        from leangen.train.augment import parse_policy

        try:
            parse_policy(diffaugment)
        except ValueError as e:
            fail(str(e))

    opts = TrainOptions(preset=preset, data=data, outdir=outdir, kimg=kimg, steps=steps, minutes=minutes, batch=batch,
                        ema_kimg=ema_kimg, ema_rampup=ema_rampup, mirror=mirror, tick=tick, snap=snap, keep=keep,
                        metrics=metrics, seed=seed, resume=resume, amp=amp, workers=workers, grid=grid,
                        device=str(policy.device), precision=policy.precision if explicit_precision else None,
                        deterministic=policy.deterministic, tf32=policy.tf32, progress=not no_progress, hparams=hparams, overrides=model_overrides)
    if data is not None and resume is None:
        _check_data(data)

    if dry_run:
        try:
            stored = None
            if resume:
                from leangen.runs import resolve_resume

                run_dir, snap_dir = resolve_resume(resume, outdir or "runs")
                stored = read_run_options(run_dir)
            resolved = resolve_options(opts, stored)
        except (ValueError, FileNotFoundError) as e:
            fail(str(e))
            return
        doc = resolved.to_dict()
        doc["world_size"] = int(os.environ.get("WORLD_SIZE", "1"))
        if resume:
            doc["resume_snapshot"] = str(snap_dir)
        click.echo(json.dumps(doc, indent=2))
        return

    from leangen.runs import SnapshotError
    from leangen.train.loop import NonFiniteLossError, TrainingError, train

    try:
        result = train(opts, policy=policy)  # its precision gives way to the resolved one (e.g. a resumed run's)
    except (NonFiniteLossError, TrainingError, SnapshotError, IncompatibleCheckpointError) as e:
        fail(str(e))
        return
    except (ValueError, FileNotFoundError, NotADirectoryError) as e:
        fail(str(e))
        return
    if result.status in ("interrupted", "aborted"):
        sys.exit(130)  # the conventional status after Ctrl-C; the snapshot and the resume hint are already out


def _check_data(data: str) -> None:
    """Fail early (before building models) on a data source that cannot exist."""
    from pathlib import Path

    if Path(data).expanduser().exists():
        return
    from leangen.tasks import is_builtin

    if is_builtin(data):
        return
    fail(f"no dataset at {data!r}: expected a .zip, an image folder, or a built-in name (openmoji)")


def _attention_roles(preset: str | None, resume: str | None, outdir: str | None) -> list[str]:
    """The components of the preset (given, or the resumed run's) whose constructor takes ``na_backend``."""
    import inspect

    from leangen.models.base import MODEL_TYPES
    from leangen.presets import get_preset

    name = preset
    if name is None and resume is not None:
        from leangen.runs import resolve_resume
        from leangen.train.options import read_run_options

        try:
            name = read_run_options(resolve_resume(resume, outdir or "runs")[0]).get("preset")
        except (ValueError, FileNotFoundError) as e:
            fail(str(e))
    if name is None:
        fail("--na-backend needs --preset (or --resume of a run)")
    try:
        components = get_preset(name).components
    except KeyError as e:
        fail(str(e.args[0]) if e.args else str(e))
    roles = [role for role, (model_type, _) in components.items()
             if "na_backend" in inspect.signature(MODEL_TYPES[model_type].__init__).parameters]
    if not roles:
        fail(f"--na-backend applies to presets with neighborhood attention (StyleNAT); {name} has none")
    return roles
