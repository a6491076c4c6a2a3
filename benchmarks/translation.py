"""ASAP-Net vs pix2pixHD-style vs SPADE: latency and peak memory of one label map -> image translation.

One process; at each size the three generators are built for that size (ASAP-Net's tile S = height/16, the
Cityscapes setting — 35 labels + instance edges — for 1:2 sizes, the Facades one — 13 labels — for squares) and
timed interleaved with ``leangen.profile.profile_models``, so ratios at a size are fair on a noisy shared machine. Models
whose count exceeds ``--max-gmacs`` are not run on CPU (their row keeps params and GMACs, with the reason).
ONNX Runtime (CPU) timings of ASAP-Net are added at the sizes in ``--onnx-sizes``.

Beside ours: the official ASAP-Net code's CPU latency (batch 1, 2 threads) quoted from ``benchmarks/anchors.json``
("translation" entry; measured elsewhere, not by this script), and the machine-check yardstick (ten 1024² GEMMs)
before and after each size.

Usage::

    python benchmarks/translation.py                       # CPU, the five sizes (~5-10 min on 2 cores)
    python benchmarks/translation.py --sizes 256x512 512x512 --max-gmacs 300
    python benchmarks/translation.py --device cuda --dtypes fp32 bf16 --max-gmacs 1e9

Results: ``benchmarks/results/translation-<device>.json`` (``rows``: one per (model, size, dtype) with ``model``,
``height``, ``width``, ``latency_ms``, ``peak_mem_mb``, ``params``, ``gmacs``, ``device``) and ``.md``.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (activate_policy, add_policy_args, compiled_for_timing, device_tag,  # noqa: E402
                     environment, fmt, md_table, write_results)
from pixel_synthesis import machine_check  # noqa: E402

SIZES = ["256x512", "512x512", "1024x1024", "512x1024", "1024x2048"]  # the sizes with official figures first
MODELS = {"asapnet": "asapnet", "pix2pixhd": "pix2pixhd-global", "spade": "spade-generator"}
ANCHORS = json.loads((Path(__file__).resolve().parent / "anchors.json").read_text())["translation"]


def build(family: str, h: int, w: int, device: torch.device | str) -> torch.nn.Module:
    """The family's generator for an ``h x w`` input in the paper setting of that aspect ratio."""
    from leangen.models.base import MODEL_TYPES

    wide = w == 2 * h
    cfg: dict[str, Any] = dict(num_classes=35 if wide else 13, resolution=h, aspect=w // h, instance_edge=wide)
    if family == "asapnet":
        cfg["reflection_pad"] = not wide
    with torch.device(device):
        return MODEL_TYPES[MODELS[family]](**cfg).eval()


def onnx_latency_ms(model: torch.nn.Module, h: int, w: int, repeats: int, threads: int) -> float:
    """Median ONNX Runtime (CPU) latency of ``model`` exported at ``h x w``, batch 1."""
    import numpy as np
    import onnxruntime as ort

    from leangen.export import export_translator_onnx
    from leangen.export.onnx import translator_input

    with tempfile.TemporaryDirectory() as tmp:
        path = export_translator_onnx(model, Path(tmp) / "m.onnx", size=(h, w))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        feed = {sess.get_inputs()[0].name: translator_input(model, 1, h, w).numpy()}  # type: ignore[arg-type]
        sess.run(None, feed)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            sess.run(None, feed)
            times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def markdown(payload: dict[str, Any]) -> str:
    env = payload["environment"]
    lines = [f"# {payload['title']}", "",
             f"{env['device_name']}, torch {env['torch_version']}, {payload['threads']} threads, batch 1, "
             f"median of {payload['repeats']} after {payload['warmup']} warm-up(s), interleaved per size. "
             f"{env['date']}.", ""]
    head = ["model", "size", "dtype", "params (M)", "GMACs", "latency (ms)", "peak mem (MB)", "official (s, quoted)",
            "× ASAP-Net", "machine check (ms)", "note"]
    rows = []
    for r in payload["rows"]:
        rows.append([r["model"], f"{r['height']}x{r['width']}", r["dtype"], fmt(r["params"] / 1e6, ".2f"),
                     fmt(r["gmacs"], ".1f"), fmt(r["latency_ms"], ".0f"), fmt(r["peak_mem_mb"], ".0f"),
                     fmt(r.get("official_s"), ".2f"), fmt(r.get("slower_than_asapnet"), ".1f"),
                     fmt(r.get("gemm_ms"), ".0f"), r.get("skipped") or ""])
    lines.append(md_table(head, rows, right_from=3))
    lines += ["", f"Official figures: {ANCHORS['source']} ({ANCHORS['date']}); quoted, not measured by this script.",
              "× ASAP-Net: this model's latency ÷ ASAP-Net's at the same size and dtype (PyTorch rows).",
              "Machine check: ten 1024² fp32 GEMMs before the size was measured (lower = quieter machine)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    add_policy_args(ap, compile=True)
    ap.add_argument("--sizes", nargs="+", default=SIZES, metavar="HxW")
    ap.add_argument("--dtypes", nargs="+", default=None, choices=["fp32", "bf16"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-gmacs", type=float, default=600.0, help="do not time models above this count")
    ap.add_argument("--onnx-sizes", nargs="*", default=["256x512", "512x512", "1024x1024"], metavar="HxW")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS), help="families to compare")
    ap.add_argument("--name", default="translation")
    ap.add_argument("--cpu-allocator", choices=["retain", "default"], default="retain",
                    help="retain: keep freed CPU memory in the process, as the leangen CLI does; default: the C "
                         "library's defaults")
    args = ap.parse_args(argv)
    if args.cpu_allocator == "retain":
        from leangen.utils.allocator import retain_freed_cpu_memory

        retain_freed_cpu_memory()

    import leangen.models  # noqa: F401  (registers the model types)
    from leangen.profile import profile_models
    from leangen.profile.inputs import example_inputs
    from leangen.profile.macs import count_macs

    dev = activate_policy(args)
    dtypes = args.dtypes or (["fp32", "bf16"] if dev.type == "cuda" else ["fp32"])
    torch.set_num_threads(args.threads)
    official = {(a["height"], a["width"]): a["seconds"] for a in ANCHORS["anchors"]}
    payload: dict[str, Any] = dict(title="ASAP-Net vs pix2pixHD-style vs SPADE (label map -> image)",
                                   environment=environment(dev), threads=args.threads, warmup=args.warmup,
                                   repeats=args.repeats, max_gmacs=args.max_gmacs, official=ANCHORS, rows=[])
    t_start = time.time()
    for dtype in dtypes:
        for size in args.sizes:
            h, w = (int(v) for v in size.lower().split("x"))
            gemm = machine_check(dev)
            run, rows = [], {}
            for family in args.models:
                meta = build(family, h, w, "meta")
                a, k = example_inputs(meta, 1, "meta")
                gmacs = count_macs(meta, a, k) / 1e9
                row = dict(model=family, height=h, width=w, dtype=dtype, compile=args.compile,
                           params=meta.num_params(), gmacs=gmacs,
                           latency_ms=None, peak_mem_mb=None, device=dev.type, gemm_ms=gemm, skipped=None)
                if gmacs > args.max_gmacs:
                    row["skipped"] = f"not timed: {gmacs:.0f} GMACs > --max-gmacs {args.max_gmacs:g} on this device"
                else:
                    run.append(family)
                rows[family] = row
            print(f"[{time.time() - t_start:5.0f}s] {size} {dtype}: timing {', '.join(run)}", file=sys.stderr,
                  flush=True)
            models = compiled_for_timing([build(f, h, w, dev) for f in run], 1, dtype, run)
            measured = profile_models(models, device=dev, dtype=dtype, batch=1,
                                      warmup=args.warmup, repeats=args.repeats, threads=args.threads)
            for family, m in zip(run, measured):
                rows[family].update(latency_ms=m["latency_ms"], peak_mem_mb=m["peak_mem_mb"],
                                    mem_method=m["mem_method"])
            base = rows["asapnet"]["latency_ms"] if "asapnet" in rows else None
            for r in rows.values():
                if base and r["latency_ms"]:
                    r["slower_than_asapnet"] = r["latency_ms"] / base
            if dev.type == "cpu" and dtype == "fp32" and args.threads == 2 and "asapnet" in rows:
                rows["asapnet"]["official_s"] = official.get((h, w))
            payload["rows"] += list(rows.values())
            if size in args.onnx_sizes and dev.type == "cpu" and dtype == "fp32" and "asapnet" in rows:
                print(f"[{time.time() - t_start:5.0f}s] {size}: ONNX Runtime", file=sys.stderr, flush=True)
                model = build("asapnet", h, w, "cpu")
                payload["rows"].append(dict(rows["asapnet"], model="asapnet-onnxruntime", peak_mem_mb=None,
                                            latency_ms=onnx_latency_ms(model, h, w, args.repeats, args.threads),
                                            slower_than_asapnet=None, mem_method=None))
            for r in payload["rows"][-len(rows) - 1:]:
                print(f"    {r['model']:<20} {r['height']}x{r['width']} {r['gmacs']:8.1f} G "
                      f"{fmt(r['latency_ms'], '.0f'):>7} ms  {r['skipped'] or ''}", file=sys.stderr, flush=True)
            payload["elapsed_s"] = round(time.time() - t_start, 1)
            jpath, mpath = write_results(args.name, device_tag(dev), payload, markdown(payload))
    print(markdown(payload))
    return payload


if __name__ == "__main__":
    main()
