"""``leangen compress``: condense -> prune -> distill a trained translator or StyleGAN2 generator, then measure teacher
vs student."""
from __future__ import annotations

import sys
from typing import Any

import click

from leangen.cli.common import device_option, fail
from leangen.cli.profile import _parse_threads  # the same thread-count list as leangen profile
from leangen.compress.options import STEPS


def _hparams(values: tuple[str, ...]) -> dict[str, object]:
    from leangen.train.options import parse_hparam

    try:
        return dict(parse_hparam(v) for v in values)
    except ValueError as e:
        fail(str(e))
        return {}


def _parse_widths(value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(v) for v in value.replace(" ", "").split(",") if v]
    except ValueError:
        raise click.BadParameter(f"takes comma-separated channel counts such as 8,16,32; got {value!r}") from None


@click.command(name="compress", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--network", required=True, metavar="RUN_DIR",
              help="Trained teacher run (e.g. of resnet-tiny32, unet-tiny32, asapnet-tiny32 or stylegan2-tiny32).")
@click.option("--data", required=True, help="Paired dataset for a translator (e.g. openmoji-seg-32-n64); images for "
              "a generator (e.g. openmoji-32-n64).")
@click.option("--outdir", required=True, type=click.Path(file_okay=False), help="Where every step writes; rerun "
              "the same command to resume.")
@click.option("--preset", default=None, help="The teacher's preset (default: read from its run).")
@click.option("--condense-steps", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--sparsity", type=float, default=1.0, show_default=True,
              help="Group-lasso λ on per-channel (γ, β) (a generator: its gates γ); the proximal threshold per step is "
                   "lr * λ.")
@click.option("--sparsity-ramp", type=click.IntRange(min=1), default=50, show_default=True,
              help="Steps over which λ ramps up linearly.")
@click.option("--threshold", type=float, default=1e-4, show_default=True,
              help="Prune channels whose ||(γ, β)|| is at or below this ...")
@click.option("--gmacs", "macs_budget", type=click.FloatRange(min=0, min_open=True), default=None,
              help="... or prune to at most this many executed GMACs per image (binary search).")
@click.option("--target-fps", type=float, default=None, help="... or prune to this many images/s measured on "
              "--runtime at the largest of --threads (candidate widths timed; achieved FPS measured after export).")
@click.option("--target-ms", type=float, default=None, help="... or to this latency per image (ms), as --target-fps.")
@click.option("--runtime", type=click.Choice(["onnxruntime", "torch", "cuda"]), default="onnxruntime",
              show_default=True, help="Where --target-fps/--target-ms is measured: ONNX Runtime or PyTorch eager on "
              "the CPU, or PyTorch eager on the CUDA device.")
@click.option("--target-resolution", type=int, default=None, metavar="PIXELS",
              help="Time --target-fps/--target-ms at this size instead of the teacher's own (a fully convolutional "
                   "translator trained at 64 deploys at 256 with the same weights).")
@click.option("--width-search", type=click.Choice(["uniform", "table", "threshold"]), default="uniform",
              show_default=True,
              help="How a latency target picks widths: one width multiplier for every group (bisection on the "
                   "measured latency; keeps the teacher's proportions), a per-group latency table measured on "
                   "--runtime and a greedy choice (importance lost per ms saved), or one global score threshold.")
@click.option("--latency-margin", type=float, default=0.0, show_default=True, metavar="FRACTION",
              help="Search for --target-fps/--target-ms less this fraction (0.1: widths that ran in 90% of the "
                   "target), headroom for a machine that runs slower when the student is timed again after export; "
                   "met or not is still judged against the target.")
@click.option("--widths", default=None, metavar="W1,W2,...", callback=lambda _c, _p, v: _parse_widths(v),
              help="... or prune to exactly these widths, one per prunable group (each keeps its highest-scoring "
                   "channels), e.g. the widths another compression chose.")
@click.option("--min-channels", type=click.IntRange(min=1), default=1, show_default=True,
              help="Channels every width keeps at least.")
@click.option("--distill-steps", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--distill-eval-every", type=click.IntRange(min=1), default=None, metavar="STEPS",
              help="Evaluate the student on the validation split every STEPS distillation steps and keep the best "
                   "(then --distill-steps is the most it may take).")
@click.option("--quality-target", type=click.FloatRange(min=1), default=None, metavar="RATIO",
              help="With --distill-eval-every: stop once the student's metric is within RATIO of the teacher's "
                   "(1.1: at most 10% worse), measured the same way.")
@click.option("--patience", type=click.IntRange(min=1), default=None, metavar="N",
              help="With --distill-eval-every: stop after N evaluations without a new best.")
@click.option("--batch", type=click.IntRange(min=1), default=None, help="Batch of both training steps.")
@click.option("--metrics", "--metric", "metric", default="psnr", show_default=True,
              help="A translator: a paired metric on the validation split (psnr, l1, fid_pairs<N>); a generator: a "
                   "sampled one (fid<N>, kid<N>). --metric is the old spelling.")
@click.option("--threads", default="1,2", show_default=True, callback=_parse_threads,
              help="CPU thread counts to time.")
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--compile/--no-compile", "use_compile", default=True, show_default=True,
              help="Also time torch.compile (compiles once per thread count; reported unavailable where it fails).")
@click.option("--onnx/--no-onnx", default=True, show_default=True, help="Export both and time ONNX Runtime.")
@click.option("--condense-hparam", multiple=True, metavar="KEY=VALUE", help="Extra condense hyper-parameter.")
@click.option("--distill-hparam", multiple=True, metavar="KEY=VALUE", help="Extra distill hyper-parameter.")
@click.option("--overwrite", is_flag=True, help="OUTDIR holds a compression started with other options: remove "
              "it and start afresh (without it such a rerun is refused).")
@click.option("--redo", type=click.Choice(list(STEPS[1:])), default=None,
              help="Remove the results of this step and the later ones, keeping the earlier ones, so the options "
                   "those steps read may change: one condensation serves another --target-fps or distillation "
                   "recipe. Leave it out when resuming.")
@device_option
def command(network: str, data: str, outdir: str, preset: str | None, condense_steps: int, sparsity: float,
            sparsity_ramp: int, threshold: float, macs_budget: float | None, target_fps: float | None,
            target_ms: float | None, runtime: str, target_resolution: int | None, width_search: str,
            latency_margin: float, widths: list[int] | None, min_channels: int,
            distill_steps: int, distill_eval_every: int | None, quality_target: float | None, patience: int | None,
            batch: int | None, metric: str, threads: list[int], repeats: int, use_compile: bool, onnx: bool,
            condense_hparam: tuple[str, ...], distill_hparam: tuple[str, ...], overwrite: bool, redo: str | None,
            device: Any) -> None:
    """Compress a trained translator (ResNet, U-Net or ASAP-Net generator) or a StyleGAN2 generator: (1) condense:
    train with a group-lasso penalty on the per-channel norm scales (a generator: gates on the channels its layers
    read, learning from the teacher on latents), (2) prune the zeroed (or least important) channels structurally, (3)
    distill the pruned student from the condensed teacher, (4) measure params, GMACs, latency (eager PyTorch,
    torch.compile, ONNX Runtime) and the metric of teacher and student. Every step writes OUTDIR/<step>/report.json; the final
    table is OUTDIR/report.md and the compressed model OUTDIR/student (load it with leangen.load). Training steps
    snapshot as they go: Ctrl-C (or a crash) keeps them, and rerunning the same command resumes. Training runs on
    --device; timing is always on the CPU.

    \b
    Examples:
      leangen train --preset resnet-tiny32 --data openmoji-seg-32-n64 --steps 300 --outdir runs
      leangen compress --network runs/00000-resnet-tiny32-openmoji-seg-32-n64 --data openmoji-seg-32-n64 \\
          --outdir compressed --gmacs 0.002
      leangen train --preset unet-tiny32 --data openmoji-seg-32-n64 --steps 300 --outdir runs
      leangen compress --network runs/00001-unet-tiny32-openmoji-seg-32-n64 --data openmoji-seg-32-n64 \\
          --outdir compressed-unet --gmacs 0.001 --no-compile
      leangen compress --network runs/00000-resnet-tiny32-openmoji-seg-32-n64 --data openmoji-seg-32-n64 \\
          --outdir compressed-fast --target-fps 2000 --runtime onnxruntime --threads 2
      leangen compress --network runs/00000-resnet-tiny32-openmoji-seg-32-n64 --data openmoji-seg-32-n64 \\
          --outdir compressed-headroom --target-fps 2000 --latency-margin 0.1  # widths timed at 90% of 0.5 ms
      leangen compress --network runs/00000-resnet-tiny32-openmoji-seg-32-n64 --data openmoji-seg-32-n64 \\
          --outdir compressed-same --widths 4,8,8,8,8,4,4  # the widths compressed-fast chose
      leangen compress --network runs/00000-resnet-tiny32-openmoji-seg-32-n64 --data openmoji-seg-32-n64 \\
          --outdir compressed-fast --target-fps 1000 --redo prune  # same condensation, another target
      leangen train --preset stylegan2-tiny32 --data openmoji-32-n64 --steps 300 --outdir runs
      leangen compress --network runs/00002-stylegan2-tiny32-openmoji-32-n64 --data openmoji-32-n64 \\
          --outdir compressed-gan --metric fid1k --gmacs 0.005 --condense-steps 500 --distill-steps 1000
    """
    from leangen.compress.pipeline import CompressInterrupted, CompressOptions, render_report, run_pipeline

    opts = CompressOptions(
        teacher=network, data=data, outdir=outdir, preset=preset, condense_steps=condense_steps, sparsity=sparsity,
        sparsity_ramp=sparsity_ramp, threshold=threshold, macs_budget=macs_budget, target_fps=target_fps,
        target_ms=target_ms, runtime=runtime, target_resolution=target_resolution,
        width_search=width_search, latency_margin=latency_margin, widths=widths, min_channels=min_channels,
        distill_steps=distill_steps, distill_eval_every=distill_eval_every, quality_target=quality_target,
        patience=patience, batch=batch, metric=metric,
        threads=threads, repeats=repeats, compile=use_compile, onnx=onnx, device=str(device), overwrite=overwrite,
        redo=redo,
        hparams={"condense": _hparams(condense_hparam), "distill": _hparams(distill_hparam)})
    try:
        doc = run_pipeline(opts, log=lambda m: click.echo(m, err=True))
    except (CompressInterrupted, KeyboardInterrupt) as e:
        click.echo(f"Interrupted: {e}." if isinstance(e, CompressInterrupted) else
                   "Interrupted: the finished steps are kept; rerun the same command to resume.", err=True)
        sys.exit(130)  # the conventional status after Ctrl-C, as leangen train
    except ValueError as e:
        fail(str(e))
    click.echo(render_report(doc))
