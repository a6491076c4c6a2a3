"""``leangen profile``: parameters, executed GMACs, peak memory, latency and throughput of one or more models.

Several models in one call are measured in the same process, interleaved round-robin, so their ratios are fair
(see ``leangen.profile``). ``--runtime`` adds ONNX Runtime and/or ``torch.compile`` beside PyTorch eager on the CPU
(``leangen.profile.runtimes``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

import click
import torch

from leangen.cli.common import execution_options, fail
from leangen.execution import ExecutionPolicy


def _num(v: Any, fmt: str) -> str:
    return "" if v is None else format(v, fmt)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None,
                   right: Sequence[int] = ()) -> str:
    """A GitHub Markdown table (``right``: indices of right-aligned columns), with ``title`` as a line above."""
    align = ["--:" if i in right else "---" for i in range(len(headers))]
    lines = ([title, ""] if title else []) + ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join("" if c is None else str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _renderer(markdown: bool) -> Callable[..., str]:
    from leangen.cli.models import render_table

    return markdown_table if markdown else render_table


def format_rows(rows: list[dict[str, Any]], markdown: bool = False) -> str:
    """The profile table, then (several models) each model's figures relative to the first."""
    from leangen.profile import ratio_table

    render_table = _renderer(markdown)

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


def format_runtime_rows(rows: list[dict[str, Any]], markdown: bool = False) -> str:
    """The ``--runtime`` table: one line per (model, runtime, threads), then why a runtime was unavailable."""
    r0 = rows[0]
    head = (f"device cpu ({r0['device_name']}), batch {r0['batch']}, fp32, median of {r0['repeats']} after "
            f"{r0['warmup']} warm-up, every model and runtime interleaved; torch {r0['torch_version']}, "
            f"onnxruntime {r0['onnxruntime_version'] or 'not installed'}")
    table = [[r["name"], r["runtime"], r["threads"], _num(r["params"] / 1e6, ".2f"), _num(r["gmacs"], ".3f"),
              _num(r["latency_ms"], ".2f") or "n/a", _num(r["latency_ms_p90"], ".2f"), _num(r["throughput"], ".1f"),
              _num(r["speedup_vs_eager"], ".2f") + ("x" if r["speedup_vs_eager"] is not None else "")]
             for r in rows]
    out = [head, _renderer(markdown)(["model", "runtime", "threads", "params (M)", "GMACs/img", "latency (ms)",
                                      "p90 (ms)", "FPS", "vs eager"], table, right=(2, 3, 4, 5, 6, 7, 8))]
    reasons = {(r["name"], r["runtime"]): r["status"] for r in rows if r["status"] != "ok"}
    out += [f"{rt} for {name}: {status}" for (name, rt), status in reasons.items()]
    diffs = {r["name"]: r["onnx_max_abs_diff"] for r in rows if r["onnx_max_abs_diff"] is not None}
    if diffs:
        out.append("ONNX Runtime vs PyTorch, max abs diff: " + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()))
    return "\n".join(out)


def _parse_threads(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        threads = [int(t) for t in value.split(",") if t.strip()]
    except ValueError:
        threads = []
    if not threads or min(threads) < 1:
        raise click.BadParameter(f"expected thread counts >= 1 such as 2 or 1,2; got {value!r}")
    return threads


def _parse_runtimes(ctx: click.Context, param: click.Parameter, value: str) -> list[str]:
    from leangen.profile.runtimes import RUNTIMES

    names = list(RUNTIMES) if value.strip() == "all" else [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in names if v not in RUNTIMES]
    if bad or not names:
        raise click.BadParameter(f"unknown runtime {bad[0] if bad else value!r}; choose from "
                                 f"{', '.join(RUNTIMES)} (comma-separated) or all")
    return list(dict.fromkeys(names))


@click.command(name="profile", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.argument("models", nargs=-1, metavar="PRESET|PATH...")
@click.option("--network", "networks", multiple=True, metavar="PATH",
              help="A saved model, snapshot or run directory to profile (repeatable; paths also work as arguments).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of rows instead of a table.")
@click.option("--markdown", is_flag=True, help="Print the tables as GitHub Markdown.")
@click.option("--runtime", "runtimes", default="torch", show_default=True, callback=_parse_runtimes,
              metavar="torch|onnxruntime|torch-compile[,...]|all",
              help="Anything besides torch: CPU latency and FPS through PyTorch eager and these runtimes, side by "
                   "side, interleaved, at each of --threads (a failing torch.compile is reported unavailable).")
@execution_options(na_backend=True, compile=True)
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True, help="Images per forward.")
@click.option("--dtype", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32", show_default=True,
              help="Weights and inputs are cast to this type.")
@click.option("--threads", default=None, callback=_parse_threads, metavar="N[,N...]",
              help="CPU threads for the measurement (default: PyTorch's current setting); several, e.g. 1,2, time "
                   "each model at each count.")
@click.option("--warmup", type=click.IntRange(min=0), default=2, show_default=True, help="Untimed rounds.")
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True,
              help="Timed rounds; the latency is their median.")
@click.option("--quiet", "-q", is_flag=True, help="No progress messages on stderr.")
def command(models: tuple[str, ...], networks: tuple[str, ...], as_json: bool, markdown: bool, runtimes: list[str],
            policy: ExecutionPolicy, batch: int, dtype: str, threads: list[int] | None, warmup: int, repeats: int,
            quiet: bool) -> None:
    """Measure parameters, GMACs, peak memory, latency and throughput of presets or saved models.

    Each model gets one row: params, gmacs (executed multiply-adds per image), peak_mem_mb, latency_ms (median
    per batch), throughput (images/s). Several models are timed in one process, interleaved, so compare them
    within one call. A preset gets random weights (speed does not depend on them).

    With --runtime onnxruntime and/or torch-compile (or several --threads), each model is timed on the CPU through
    PyTorch eager and those runtimes at each thread count, every pair interleaved: one row per model, runtime and
    thread count with latency_ms, latency_ms_p90, throughput (FPS), speedup_vs_eager and status ("ok" or
    "unavailable: <reason>", e.g. torch.compile without a C++ compiler, or a likelihood model under onnxruntime).

    \b
    Examples:
      leangen profile stylegan2-256
      leangen profile pixelfolder-256 cips-256 stylegan2-256 --device cpu --threads 2
      leangen profile pixelfolder-256 --device cuda --batch 16 --dtype bf16 --json
      leangen profile runs/00000-stylegan2-tiny32-openmoji-32 --network runs/00001-pixelfolder-tiny32-openmoji-32
      leangen profile resnet9-256 compressed/student --runtime onnxruntime --threads 1,2
      leangen profile stylegan2-256 --runtime onnxruntime,torch-compile --threads 2 --markdown
      leangen profile pixelfolder-256 stylegan2-256 --device cuda --batch 32 --compile cudagraphs

    With --compile, each model's image-producing pass (a generator's synthesis, a translator's forward) is compiled
    as `leangen generate` and `translate` compile it, and timed compiled; MACs are counted on the uncompiled
    architecture. Likelihood models are timed eagerly (their sampling loops are not compiled).
    """
    from leangen.profile import profile_models

    device = policy.device
    specs: list[str] = list(models) + list(networks)
    if not specs:
        fail("give at least one preset name or model path (see `leangen models` for the presets)")
    for s in networks:
        if not Path(s).exists():
            fail(f"--network {s}: no such file or directory")

    def log(msg: str) -> None:
        if not (quiet or as_json):
            click.echo(msg, err=True)

    if policy.compile != "off":
        if runtimes != ["torch"] or (threads and len(threads) > 1):
            fail("--compile times the torch rows compiled; for the CPU runtime comparison use --runtime torch-compile")
        specs = _compiled_models(specs, policy, batch, dtype, log)  # type: ignore[assignment]
    if runtimes != ["torch"] or (threads and len(threads) > 1):
        _profile_runtimes(specs, runtimes, device, dtype, threads, batch, warmup, repeats, as_json, markdown, log)
        return
    names = [str(s) for s in list(models) + list(networks)]
    try:
        rows = profile_models(specs, device=device, batch=batch, dtype=dtype, warmup=warmup,  # type: ignore[arg-type]
                              repeats=repeats, threads=threads[0] if threads else None, log=log,
                              na_backend=policy.na_backend)
    except KeyError as e:  # unknown preset: the registry's message lists close matches
        fail(str(e.args[0]) if e.args else str(e))
    except (FileNotFoundError, ValueError, TypeError) as e:
        fail(str(e))
    except RuntimeError as e:  # e.g. a dtype the device has no kernels for
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        fail(f"profiling failed on {device} with {dtype}: {first}")
    for row, name in zip(rows, names):
        row["name"] = name  # a compiled model's row is named after its preset or path, not its class
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        click.echo(format_rows(rows, markdown))


def _compiled_models(specs: list[str], policy: ExecutionPolicy, batch: int, dtype: str, log: Callable[[str], None]
                     ) -> list[torch.nn.Module]:
    """Presets and paths built or loaded on the policy's device, then :func:`compile_for_timing`."""
    from leangen.cli.common import load_model
    from leangen.presets import get_preset

    models = []
    for spec in specs:
        if Path(spec).exists():
            models.append(load_model(spec, policy.device, verb="profile"))  # compiled below, once
            continue
        try:
            preset = get_preset(spec)
        except KeyError as e:
            fail(str(e.args[0]) if e.args else str(e))
        with torch.device(policy.device):
            models.append(preset.build(preset.main_component).eval())
    if policy.na_backend is not None:  # before compiling: the backend is part of what is traced
        from leangen.ops.neighborhood import set_backends

        for model in models:
            set_backends(model, policy.na_backend)  # type: ignore[arg-type]
    return compile_for_timing(models, policy, batch, dtype, specs, log)


def compile_for_timing(models: list[torch.nn.Module], policy: ExecutionPolicy, batch: int, dtype: str,
                       names: Sequence[str] | None = None, log: Callable[[str], None] | None = None
                       ) -> list[torch.nn.Module]:
    """``models`` cast to ``dtype`` (``fp32``/``bf16``/``fp16``), their image-producing pass compiled as the policy
    says (``ExecutionPolicy.prepare``: eager fallback with the reason) and run once at ``batch``, so that compiling is
    done before ``leangen.profile`` measures them. Returns ``models``.

    Compiled here rather than on the profiler's first call: on the CPU its memory count runs the model under a
    dispatch mode, and a first call there would leave dynamo nothing to compile.
    """
    from leangen.cli.common import COMPILED_METHODS
    from leangen.models.pretrained import model_kind
    from leangen.profile.inputs import call_model, example_inputs
    from leangen.profile.runner import DTYPES

    say = log or (lambda _m: None)
    for i, model in enumerate(models):
        name = names[i] if names is not None else type(model).__name__
        policy.prepare(model, COMPILED_METHODS.get(model_kind(model), ()), log=say)
        say(f"compiling {name} ({policy.compile})")
        model.to(DTYPES[dtype])
        args, kwargs = example_inputs(model, batch, policy.device, DTYPES[dtype])
        with torch.inference_mode():
            call_model(model, args, kwargs)
    return models


def _profile_runtimes(specs: list[str], runtimes: list[str], device: torch.device, dtype: str,
                      threads: list[int] | None, batch: int, warmup: int, repeats: int, as_json: bool, markdown: bool,
                      log: Callable[[str], None]) -> None:
    """The ``--runtime`` / several ``--threads`` mode: CPU, fp32, every runtime interleaved (``profile_runtimes``)."""
    from leangen.profile import profile_runtimes

    if dtype != "fp32":
        fail(f"--runtime compares runtimes in fp32 (the ONNX export's type); drop --dtype {dtype}")
    if device.type != "cpu":
        log(f"note: runtimes are compared on the CPU (--device {device} is not used)")
    try:
        rows = profile_runtimes(specs, runtimes, threads or [torch.get_num_threads()], batch=batch, warmup=warmup,
                                repeats=repeats, log=log)
    except KeyError as e:  # unknown preset: the registry's message lists close matches
        fail(str(e.args[0]) if e.args else str(e))
    except (FileNotFoundError, ValueError, TypeError) as e:
        fail(str(e))
    click.echo(json.dumps(rows, indent=2) if as_json else format_runtime_rows(rows, markdown))
