"""``leangen export``: write a generator (z -> image) or a translator (label map -> image) as an ONNX graph and
check it in ONNX Runtime."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from leangen.cli.common import device_option, fail, load_model


@click.command(name="export", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--network", required=True, metavar="PATH|PRESET",
              help="Saved model folder, training snapshot, run directory, or a preset name (random weights).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), metavar="FILE.onnx", help="Output file.")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True,
              help="Batch size baked into the graph.")
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
@device_option
def command(network: str, out: str, batch: int, truncation: float, opset: int, exporter: str, size: str | None,
            one_hot: bool, check: bool, atol: float, device: Any) -> None:
    """Export to ONNX. A generator: input z [batch, z_dim], output image [batch, 3, R, R] in about [-1, 1]
    (noise is the model's constant noise, so the graph is deterministic). A translator: input labels int64
    [batch, H, W] (or --one-hot float [batch, K, H, W]), output image [batch, 3, H, W].

    \b
    Examples:
      leangen export --network runs/00000-pixelfolder-tiny32-openmoji-32 --out pf.onnx
      leangen export --network pixelfolder-256 --out pf256.onnx --batch 4 --trunc 0.7
      leangen export --network saved/cips --out cips.onnx --no-check
      leangen export --network asapnet-tiny32 --out asap.onnx --size 64x96
    """

    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
        if check:
            import onnxruntime  # noqa: F401
    except ImportError as e:
        fail(f"ONNX export needs the export extras ({e.name} is missing): pip install 'leangen[export]'")
    from leangen.export import check_onnx, export_onnx

    G = load_model(network, device, ("generator", "translator"), "leangen export (z -> image or label map -> image)")
    if G.kind == "translator":
        _export_translator(G, out, batch, size, one_hot, opset, check, atol)
        return

    t0 = time.perf_counter()
    try:
        path = export_onnx(G, out, batch=batch, truncation_psi=truncation, opset=opset, exporter=exporter)  # type: ignore[arg-type]
    except ValueError as e:
        fail(str(e))
    except Exception as e:  # exporter failures are long; keep the first line and name the exporter
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        fail(f"{exporter} export of {G.model_type} failed: {first}")
    size_mb = Path(path).stat().st_size / 1e6
    click.echo(f"wrote {path} ({G.model_type}, {G.img_resolution}px, batch {batch}, {size_mb:.1f} MB, "
               f"{time.perf_counter() - t0:.1f} s)")
    if check:
        try:
            diff = check_onnx(G, path, atol=atol, truncation_psi=truncation)
        except AssertionError as e:
            fail(f"check failed: {e}")
        click.echo(f"check: ONNX Runtime matches PyTorch (max abs diff {diff:.2e} <= {atol:g})")


def _export_translator(T: Any, out: str, batch: int, size: str | None, one_hot: bool, opset: int, check: bool,
                       atol: float) -> None:
    from leangen.cli.generate import parse_size
    from leangen.export import check_translator_onnx, export_translator_onnx

    try:
        hw = parse_size(size) if size else None
    except ValueError as e:
        fail(str(e))
    t0 = time.perf_counter()
    try:
        path = export_translator_onnx(T, out, batch=batch, size=hw, one_hot=one_hot, opset=opset)
    except ValueError as e:
        fail(str(e))
    except Exception as e:  # exporter failures are long; keep the first line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        fail(f"export of {T.model_type} failed: {first}")
    click.echo(f"wrote {path} ({T.model_type}, batch {batch}, {Path(path).stat().st_size / 1e6:.1f} MB, "
               f"{time.perf_counter() - t0:.1f} s)")
    if check:
        try:
            diff = check_translator_onnx(T, path, atol=atol)
        except AssertionError as e:
            fail(f"check failed: {e}")
        click.echo(f"check: ONNX Runtime matches PyTorch (max abs diff {diff:.2e} <= {atol:g})")
