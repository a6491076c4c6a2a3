"""Modulated-convolution paths on whole generators: ``grouped`` (per-sample weights) vs ``scaled`` (styles on the
activations, one shared-weight conv, demodulation on the output) vs ``auto`` (the default: grouped for batch-1
inference, scaled otherwise), see ``leangen.ops.modulated``.

Every (model, path) pair is a copy of the same weights, and all of them are timed in ONE process, interleaved
round-robin (``leangen.profile.profile_models``), so the ratios hold on a noisy shared machine. Before this switch
existed StyleGAN2 always ran ``scaled`` and PixelFolder ``grouped`` at batch 1 (eager inference) and ``scaled`` above:
the rows of those paths are the "before" figures, ``auto`` the "after".

Usage::

    python benchmarks/modconv_paths.py                                  # CPU, 2 threads: b1 and b4 at 256 (~6 min)
    python benchmarks/modconv_paths.py --device cuda --runs 1 32 --dtypes fp32 bf16

Results: ``benchmarks/results/modconv_paths-<device>.json`` and ``.md``.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (activate_policy, add_policy_args, build_on, device_tag, environment, fmt,  # noqa: E402
                     md_table, run_line, write_results)

PATHS = ("grouped", "scaled", "auto")
BEFORE = {"stylegan2": {1: "scaled", 4: "scaled"}, "pixelfolder": {1: "grouped"}}  # otherwise scaled


def before_path(family: str, batch: int) -> str:
    """The path a model ran before the ``impl`` switch (see the module docstring)."""
    return BEFORE.get(family, {}).get(batch, "scaled")


def measure(presets: list[str], batch: int, dtype: str, dev: torch.device, warmup: int, repeats: int,
            threads: int | None) -> list[dict[str, Any]]:
    """One row per (preset, path), all timed interleaved."""
    from leangen.ops.modulated import set_modconv_impl
    from leangen.profile import profile_models
    from leangen.registry import get_preset

    models, names = [], []
    for name in presets:
        base = build_on(name, dev)
        for path in PATHS:
            m = copy.deepcopy(base)
            set_modconv_impl(m, path)  # type: ignore[arg-type]
            models.append(m)
            names.append((name, get_preset(name).family, path))
        del base
    rows = profile_models(models, device=dev, batch=batch, dtype=dtype, warmup=warmup,  # type: ignore[arg-type]
                          repeats=repeats, threads=threads, log=lambda m: print("    " + m, file=sys.stderr,
                                                                                    flush=True))
    out = []
    for (name, family, path), r in zip(names, rows):
        out.append(dict(model=name, family=family, path=path, before=path == before_path(family, batch),
                        batch=batch, dtype=dtype, latency_ms=r["latency_ms"], latency_ms_p90=r["latency_ms_p90"],
                        throughput=r["throughput"], gmacs=r["gmacs"], threads=r["threads"]))
    for name in presets:  # ratios against the "before" path of the same model
        group = [r for r in out if r["model"] == name]
        ref = next(r for r in group if r["before"])["latency_ms"]
        for r in group:
            r["vs_before"] = ref / r["latency_ms"] if r["latency_ms"] else None
    return out


def markdown(payload: dict[str, Any]) -> str:
    env = payload["environment"]
    head = [f"## {payload['title']}", "", run_line(env, "modconv_paths.py", payload["threads"]), "",
            "Each model and path is a copy of the same random weights; all rows of a table were timed interleaved in "
            f"one process (median of {payload['repeats']} rounds after {payload['warmup']} warm-up). *before*: the "
            "path that model ran before the switch; *speed vs before* = before's latency ÷ this row's (> 1: faster)."]
    body = []
    for run in payload["runs"]:
        rows = [[r["model"], r["path"], "yes" if r["before"] else "", fmt(r["latency_ms"], ".0f"),
                 fmt(r["latency_ms_p90"], ".0f"), fmt(r["throughput"], ".2f"), fmt(r["vs_before"], ".2f", "×")]
                for r in run["rows"]]
        body.append(f"### batch {run['batch']}, {run['dtype']}\n\n" + md_table(
            ["model", "path", "before", "latency (ms)", "p90 (ms)", "images/s", "speed vs before"], rows, right_from=3))
    return "\n".join(head) + "\n\n" + "\n\n".join(body) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    add_policy_args(ap)
    ap.add_argument("--presets", nargs="+", default=["stylegan2-256", "pixelfolder-256"])
    ap.add_argument("--runs", nargs="+", type=int, default=[1, 4], metavar="BATCH")
    ap.add_argument("--dtypes", nargs="+", default=["fp32"], choices=["fp32", "bf16", "fp16"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--name", default="modconv_paths", help="result file stem")
    args = ap.parse_args(argv)
    from leangen.utils.allocator import retain_freed_cpu_memory

    retain_freed_cpu_memory()  # as the CLI does: no page faults on large activations
    dev = activate_policy(args)
    gpu = dev.type == "cuda"
    torch.set_num_threads(args.threads)
    payload: dict[str, Any] = dict(title="Modulated convolution: grouped vs scaled vs auto",
                                   environment=environment(dev), threads=args.threads, warmup=args.warmup,
                                   repeats=args.repeats, runs=[])
    t0 = time.time()
    for dtype in args.dtypes:
        for batch in args.runs:
            print(f"[{time.time() - t0:5.0f}s] batch {batch} {dtype}", file=sys.stderr, flush=True)
            rows = measure(args.presets, batch, dtype, dev, args.warmup, args.repeats, None if gpu else args.threads)
            payload["runs"].append(dict(batch=batch, dtype=dtype, rows=rows))
            payload["elapsed_s"] = round(time.time() - t0, 1)
            write_results(args.name, device_tag(dev), payload, markdown(payload))
    print(markdown(payload))
    return payload


if __name__ == "__main__":
    main()
