"""``leangen profile``: parameters, executed GMACs, peak memory, latency and throughput of one or more models.

Several models in one call are measured in the same process, interleaved round-robin, so their ratios are fair
(see ``leangen.profile``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import torch

from leangen.cli.common import device_option, fail


def _num(v: Any, fmt: str) -> str:
    return "" if v is None else format(v, fmt)


def format_rows(rows: list[dict[str, Any]]) -> str:
    """The profile table, then (several models) each model's figures relative to the first."""
    from leangen.cli.models import render_table
    from leangen.profile import ratio_table

    r0 = rows[0]
    head = (f"device {r0['device']} ({r0['device_name']}), batch {r0['batch']}, {r0['dtype']}, "
            f"{r0['threads']} threads, "
            f"median of {r0['repeats']} after {r0['warmup']} warm-up, torch {r0['torch_version']}")
    table = []
    for r in rows:
        table.append([r["name"], r["family"], r["resolution"], _num(r["params"] and r["params"] / 1e6, ".2f"),
                      _num(r["gmacs"], ".2f"), _num(r["peak_mem_mb"], ".0f"), _num(r["latency_ms"], ".1f"),
                      _num(r["latency_ms_p90"], ".1f"), _num(r["throughput"], ".2f")])
    out = [head, render_table(["model", "family", "res", "params (M)", "GMACs/img", "peak mem (MB)",
                               "latency (ms)", "p90 (ms)", "images/s"], table, right=(2, 3, 4, 5, 6, 7, 8))]
    for r in rows:
        if r.get("skipped"):
            out.append(f"skipped {r['name']}: {r['skipped']}")
    mem_methods = {r["mem_method"] for r in rows if r.get("mem_method")}
    if mem_methods:
        out.append("GMACs: executed multiply-adds per image; latency: per batch; "
                   f"peak memory: {', '.join(sorted(mem_methods))}")
    if len(rows) > 1:
        ratios = ratio_table(rows)
        rt = [[r["name"], *(_num(r[k], ".2f") + ("x" if r[k] is not None else "")
                            for k in ("params", "gmacs", "peak_mem_mb", "latency_ms", "throughput"))]
              for r in ratios]
        out.append("")
        out.append(render_table(["model", "params", "GMACs", "peak mem", "latency", "throughput"], rt,
                                title=f"relative to {rows[0]['name']}", right=(1, 2, 3, 4, 5)))
    return "\n".join(out)


@click.command(name="profile", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.argument("models", nargs=-1, metavar="PRESET|PATH...")
@click.option("--network", "networks", multiple=True, metavar="PATH",
              help="A saved model, snapshot or run directory to profile (repeatable; paths also work as arguments).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of rows instead of a table.")
@device_option
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True, help="Images per forward.")
@click.option("--dtype", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32", show_default=True,
              help="Weights and inputs are cast to this type.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads for the measurement (default: PyTorch's current setting).")
@click.option("--warmup", type=click.IntRange(min=0), default=2, show_default=True, help="Untimed rounds.")
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True,
              help="Timed rounds; the latency is their median.")
@click.option("--quiet", "-q", is_flag=True, help="No progress messages on stderr.")
def command(models: tuple[str, ...], networks: tuple[str, ...], as_json: bool, device: torch.device, batch: int,
            dtype: str, threads: int | None, warmup: int, repeats: int, quiet: bool) -> None:
    """Measure parameters, GMACs, peak memory, latency and throughput of presets or saved models.

    Each model gets one row: params, gmacs (executed multiply-adds per image), peak_mem_mb, latency_ms (median
    per batch), throughput (images/s). Several models are timed in one process, interleaved, so compare them
    within one call. A preset gets random weights (speed does not depend on them).

    \b
    Examples:
      leangen profile stylegan2-256
      leangen profile pixelfolder-256 cips-256 stylegan2-256 --device cpu --threads 2
      leangen profile pixelfolder-256 --device cuda --batch 16 --dtype bf16 --json
      leangen profile runs/00000-stylegan2-tiny32-openmoji-32 --network runs/00001-pixelfolder-tiny32-openmoji-32
    """
    from leangen.profile import profile_models

    specs: list[str] = list(models) + list(networks)
    if not specs:
        fail("give at least one preset name or model path (see `leangen models` for the presets)")
    for s in networks:
        if not Path(s).exists():
            fail(f"--network {s}: no such file or directory")

    def log(msg: str) -> None:
        if not (quiet or as_json):
            click.echo(msg, err=True)

    try:
        rows = profile_models(specs, device=device, batch=batch, dtype=dtype, warmup=warmup,  # type: ignore[arg-type]
                              repeats=repeats, threads=threads, log=log)
    except KeyError as e:  # unknown preset: the registry's message lists close matches
        fail(str(e.args[0]) if e.args else str(e))
    except (FileNotFoundError, ValueError, TypeError) as e:
        fail(str(e))
    except RuntimeError as e:  # e.g. a dtype the device has no kernels for
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        fail(f"profiling failed on {device} with {dtype}: {first}")
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        click.echo(format_rows(rows))
