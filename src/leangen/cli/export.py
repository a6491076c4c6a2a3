"""``leangen export``: write a generator (z -> image) or a translator (label map -> image) as an ONNX graph and
check it in ONNX Runtime."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from leangen.cli.common import KIND_NAMES, execution_options, fail, load_model
from leangen.execution import ExecutionPolicy


@click.command(name="export", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--network", required=True, metavar="PATH|PRESET",
              help="Saved model folder, training snapshot, run directory, or a preset name (random weights).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), metavar="FILE.onnx", help="Output file.")
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True,
              help="Output format.")
@click.option("--batch", type=click.IntRange(min=1), default=None,
              help="Batch size baked into the graph [default: 1].")
@click.option("--dynamic-batch", is_flag=True,
              help="A symbolic batch axis instead: the graph runs at any batch size (checked at batch 1 and 3).")
@click.option("--trunc", "truncation", type=float, default=1.0, show_default=True,
              help="Truncation psi baked into the graph (1 = none).")
@click.option("--opset", type=click.IntRange(min=7), default=18, show_default=True, help="ONNX opset version.")
@click.option("--exporter", type=click.Choice(["dynamo", "torchscript"]), default="dynamo", show_default=True,
              help="torch.onnx exporter (torchscript only works for CIPS).")
@click.option("--size", default=None, metavar="HxW",
              help="Translators: the label-map size baked into the graph (default: the training size).")
@click.option("--one-hot", is_flag=True,
              help="Translators: take a float one-hot map [B, K, H, W] instead of int64 label ids [B, H, W].")
@click.option("--check/--no-check", default=True, show_default=True,
              help="Run the graph in ONNX Runtime and compare with PyTorch.")
@click.option("--atol", type=float, default=1e-3, show_default=True, help="Tolerance of the check (max abs diff).")
@execution_options(na_backend=True)
def command(network: str, out: str, fmt: str, batch: int | None, dynamic_batch: bool, truncation: float, opset: int,
            exporter: str, size: str | None, one_hot: bool, check: bool, atol: float,
            policy: ExecutionPolicy) -> None:
    """Export to ONNX. A generator: input z [batch, z_dim], output image [batch, 3, R, R] in about [-1, 1]
    (noise is the model's constant noise, so the graph is deterministic). A translator: input labels int64
    [batch, H, W] (or --one-hot float [batch, K, H, W]; CycleGAN-style translators: images float [batch, C, H, W]
    in [-1, 1]), output image [batch, 3, H, W]. With --dynamic-batch the
    batch axis is named "batch" and takes any size. Every generator and translator family exports (StyleNAT through
    its gather attention backend, compressed students too); likelihood models do not.

    \b
    Examples:
      leangen export --network runs/00000-pixelfolder-tiny32-openmoji-32 --out pf.onnx
      leangen export --network pixelfolder-256 --out pf256.onnx --batch 4 --trunc 0.7
      leangen export --network stylenat-256 --format onnx --out sn.onnx --dynamic-batch
      leangen export --network compressed/student --out student.onnx --dynamic-batch
      leangen export --network saved/cips --out cips.onnx --no-check
      leangen export --network asapnet-tiny32 --out asap.onnx --size 64x96
    """
    if batch is not None and dynamic_batch:
        fail("--batch fixes the batch axis and --dynamic-batch makes it symbolic: give one of them")
    batch = batch or 1
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
        if check:
            import onnxruntime  # noqa: F401
    except ImportError as e:
        fail(f"ONNX export needs the export extras ({e.name} is missing): pip install 'leangen[export]'")
    from leangen.export import check_onnx, export_onnx, unsupported_reason

    G = load_model(network, policy, None, "leangen export")
    reason = unsupported_reason(G)
    if reason:  # one line: what the model is, what export needs, and why this one has none
        from leangen.models.pretrained import model_kind, model_label

        kind = model_kind(G)
        fail(f"{network} holds {KIND_NAMES.get(kind, kind)} ({model_label(G)}); "
             f"leangen export needs an image generator or a translator: {reason}")
    if G.kind == "translator":
        _export_translator(G, out, batch, dynamic_batch, size, one_hot, opset, check, atol)
        return

    t0 = time.perf_counter()
    try:
        path = export_onnx(G, out, batch=batch, truncation_psi=truncation, opset=opset, exporter=exporter,  # type: ignore[arg-type]
                           dynamic_batch=dynamic_batch)
    except ValueError as e:
        fail(str(e))
    except Exception as e:  # exporter failures are long; keep the first line and name the exporter
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        fail(f"{exporter} export of {G.model_type} failed: {first}")
    size_mb = Path(path).stat().st_size / 1e6
    click.echo(f"wrote {path} ({G.model_type}, {G.img_resolution}px, {_batch_text(batch, dynamic_batch)}, "
               f"{size_mb:.1f} MB, {time.perf_counter() - t0:.1f} s)")
    if check:
        try:
            diff = check_onnx(G, path, atol=atol, truncation_psi=truncation)
        except AssertionError as e:
            fail(f"check failed: {e}")
        _say_checked(diff, atol, dynamic_batch)


def _batch_text(batch: int, dynamic: bool) -> str:
    return "dynamic batch" if dynamic else f"batch {batch}"


def _say_checked(diff: float, atol: float, dynamic: bool) -> None:
    where = " at batch 1 and 3" if dynamic else ""
    click.echo(f"check: ONNX Runtime matches PyTorch{where} (max abs diff {diff:.2e} <= {atol:g})")


def _export_translator(T: Any, out: str, batch: int, dynamic_batch: bool, size: str | None, one_hot: bool,
                       opset: int, check: bool, atol: float) -> None:
    from leangen.cli.generate import parse_size
    from leangen.export import check_translator_onnx, export_translator_onnx
    from leangen.export.onnx import takes_images

    if one_hot and takes_images(T):
        fail(f"--one-hot is for label-map translators; {T.model_type} here takes images [B, C, H, W]")

    try:
        hw = parse_size(size) if size else None
    except ValueError as e:
        fail(str(e))
    t0 = time.perf_counter()
    try:
        path = export_translator_onnx(T, out, batch=batch, size=hw, one_hot=one_hot, opset=opset,
                                      dynamic_batch=dynamic_batch)
    except ValueError as e:
        fail(str(e))
    except Exception as e:  # exporter failures are long; keep the first line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        fail(f"export of {T.model_type} failed: {first}")
    click.echo(f"wrote {path} ({T.model_type}, {_batch_text(batch, dynamic_batch)}, "
               f"{Path(path).stat().st_size / 1e6:.1f} MB, {time.perf_counter() - t0:.1f} s)")
    if check:
        try:
            diff = check_translator_onnx(T, path, atol=atol)
        except AssertionError as e:
            fail(f"check failed: {e}")
        _say_checked(diff, atol, dynamic_batch)
