"""Helpers shared by the benchmark scripts: environment header, Markdown tables, JSON + Markdown output files."""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import re
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def add_policy_args(ap: Any, compile: bool = False) -> None:
    """``--deterministic`` and ``--tf32/--no-tf32`` of the execution policy (``--device`` is each script's own);
    with ``compile=True`` also ``--compile {off,compile,cudagraphs}`` (see :func:`compiled_for_timing`)."""
    ap.add_argument("--deterministic", action="store_true", help="TF32 off, deterministic kernels (GPU)")
    ap.add_argument("--tf32", action=argparse.BooleanOptionalAction, default=None, help="TF32 on CUDA (default: on)")
    if compile:
        ap.add_argument("--compile", default="off", choices=["off", "compile", "cudagraphs"],
                        help="time the models compiled (cudagraphs: CUDA graphs too), as `leangen profile --compile`")


def activate_policy(args: Any) -> torch.device:
    """Build and activate the execution policy from ``--device`` (+ ``add_policy_args``); returns its device."""
    from leangen.execution import ExecutionPolicy

    policy = ExecutionPolicy.create(args.device, tf32=getattr(args, "tf32", None),
                                    deterministic=bool(getattr(args, "deterministic", False)),
                                    compile=getattr(args, "compile", "off"))
    return policy.activate().device


def compiled_for_timing(models: list[Any], batch: int, dtype: str, names: Sequence[str] | None = None) -> list[Any]:
    """Under ``--compile compile|cudagraphs``: the models compiled and warmed up at ``batch``/``dtype`` before they are
    timed (``leangen.cli.profile.compile_for_timing``); unchanged when the policy does not compile."""
    from leangen.execution import current_policy

    policy = current_policy()
    if policy.compile == "off":
        return models
    from leangen.cli.profile import compile_for_timing

    return compile_for_timing(models, policy, batch, dtype, names,
                              log=lambda m: print("    " + m, file=sys.stderr, flush=True))


def environment(device: torch.device) -> dict[str, Any]:
    """Where and with what a benchmark ran (saved beside every result, per the timing protocol), with the execution
    policy it ran under (TF32, determinism, compile mode)."""
    import dataclasses

    from leangen.execution import current_policy
    from leangen.profile import device_name
    from leangen.utils.allocator import cpu_allocator_state

    return dict(device=str(device), device_name=device_name(device), torch_version=torch.__version__,
                execution=dataclasses.replace(current_policy(), device=device).record(),
                cpu_allocator=cpu_allocator_state(),
                threads=torch.get_num_threads(), cuda=torch.version.cuda,
                date=_dt.datetime.now().isoformat(timespec="seconds"), python=sys.version.split()[0], argv=sys.argv[1:])


def build_on(preset_name: str, device: torch.device | str) -> torch.nn.Module:
    """A preset's main component with random weights, built directly on ``device``, in eval mode."""
    from leangen.registry import get_preset

    preset = get_preset(preset_name)
    with torch.device(device):
        return preset.build(preset.main_component).eval()


def run_line(env: dict[str, Any], script: str, threads: int | None = None) -> str:
    """The Markdown line naming where, when and with which command a result was measured."""
    where = f"Device: **{env['device_name']}** (`{env['device']}`), PyTorch {env['torch_version']}"
    if threads is not None:
        where += f", {threads} thread(s)"
    return f"{where}, {env['date']}. Command: `{' '.join(['python', 'benchmarks/' + script, *env['argv']])}`."


def device_tag(device: torch.device) -> str:
    """Short file-name tag: ``cpu``, or the GPU model (``h100``, ``h200``, ``a100``...) so results of different cards
    do not overwrite each other."""
    if device.type != "cuda":
        return device.type
    from leangen.profile import device_name

    m = re.search(r"\b([a-z]{1,2}\d{2,4}[a-z]?)\b", device_name(device).lower())
    return m.group(1) if m else "cuda"


def fmt(v: Any, spec: str = ".2f", suffix: str = "") -> str:
    """A number for a table cell; blank for None."""
    if v is None or v == "":
        return ""
    if isinstance(v, str):
        return v
    return format(v, spec) + suffix


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right_from: int = 1) -> str:
    """A GitHub Markdown table; columns from ``right_from`` on are right-aligned (numbers)."""
    align = ["---" if i < right_from else "--:" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join("" if c is None else str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def write_results(name: str, tag: str, payload: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    """Write ``results/<name>-<tag>.json`` and ``.md``; returns both paths."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    jpath = RESULTS / f"{name}-{tag}.json"
    mpath = RESULTS / f"{name}-{tag}.md"
    jpath.write_text(json.dumps(payload, indent=2) + "\n")
    mpath.write_text(markdown.rstrip() + "\n")
    return jpath, mpath
