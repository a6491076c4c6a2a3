"""Equal wall-clock quality: train several generator presets for the same minutes each, then compare FID/KID.

PixelFolder's paper orders FID as PixelFolder <= StyleGAN2 < CIPS at equal training. This script trains each preset
with the shared GAN trainer (``leangen train --minutes M``, same data, seed and batch rules) one after the other and
reports the metrics of each run's final snapshot, the kimg each reached in the budget, and the paper's ordering next
to the observed one. CPU defaults are small (32 px tiny presets, minutes, 500-image metrics): a sanity check of the
machinery and of early training speed, not the paper's result; on a GPU pass the 64 px presets and a longer budget::

    python benchmarks/quality_equal_time.py                                   # CPU: tiny 32 px, 8 min each
    python benchmarks/quality_equal_time.py --device cuda --minutes 30 \\
        --presets pixelfolder-tiny64 stylegan2-tiny64 --resolution 64 --metrics fid2k,kid2k

Results: ``benchmarks/results/quality_equal_time-<device>.json`` and ``.md``; run directories under ``--outdir``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (activate_policy, add_policy_args, device_tag,  # noqa: E402
                     environment, fmt, md_table, write_results)
from pixel_synthesis import machine_check  # noqa: E402

DEFAULT_PRESETS = ["pixelfolder-tiny32", "stylegan2-tiny32", "cips-tiny32"]
PAPER_ORDER = ["pixelfolder", "stylegan2", "cips"]  # best (lowest FID) first, PixelFolder (ECCV 2022) Table 1


def paper_order_text(families: list[str]) -> str:
    """The paper's FID ordering, e.g. ``pixelfolder ≤ stylegan2 < cips`` (PixelFolder and StyleGAN2 are close)."""
    out = families[0]
    for f in families[1:]:
        out += (" < " if f == "cips" else " ≤ ") + f
    return out


def last_metric(run_dir: Path, name: str) -> dict[str, Any] | None:
    path = run_dir / f"metric-{name}.jsonl"
    if not path.exists():
        return None
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    return json.loads(lines[-1]) if lines else None


def markdown(payload: dict[str, Any]) -> str:
    env, rows, metrics = payload["environment"], payload["rows"], payload["metrics"]
    observed, expected = payload["observed_order"], payload["paper_order"]
    key = metrics[0]
    table = [[r["name"], fmt(r["params_G"] / 1e6 if r["params_G"] else None, ".3f"), r["batch"], fmt(r["kimg"], ".1f"),
              r["steps"], fmt(r["gemm_ms"], ".0f"), *[fmt(r[m], ".4g") for m in metrics]] for r in rows]
    return "\n".join([
        "## Equal wall-clock training: FID/KID after the same minutes", "",
        f"Device: **{env['device_name']}** (`{env['device']}`), PyTorch {env['torch_version']}, {payload['threads']} "
        f"thread(s), {env['date']}. Data: `{payload['data']}`. Budget: {payload['minutes']:g} min of training per "
        f"preset (metrics of the final snapshot are computed after it). Command: `python benchmarks/quality_equal_time.py "
        f"{' '.join(env['argv'])}`.", "",
        "Metrics use the generator EMA, truncation 1, random noise; small-n FID is biased upwards (compare within the "
        "table only), KID is unbiased. Machine check: ms for ten 1024² GEMMs before each run (lower = quieter).", "",
        md_table(["preset", "G params (M)", "batch", "kimg reached", "steps", "machine check (ms)", *metrics], table),
        "", f"Order by {key} (best first): observed {' < '.join(observed)}; paper (Table 1: FFHQ/LSUN at 256, full training) "
        f"{paper_order_text(expected)} — {'same' if observed == expected else 'different'} order.",
    ])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=DEFAULT_PRESETS)
    ap.add_argument("--data", default="openmoji", help="dataset zip, folder or built-in name (default: openmoji)")
    ap.add_argument("--resolution", type=int, default=None, help="for built-in data (default: the presets')")
    ap.add_argument("--minutes", type=float, default=8.0, help="wall-clock training budget per preset")
    ap.add_argument("--metrics", default="fid500,kid500", help="metrics of the final snapshot")
    ap.add_argument("--device", default="auto")
    add_policy_args(ap)
    ap.add_argument("--threads", type=int, default=2, help="CPU threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--outdir", default="runs/quality-equal-time")
    ap.add_argument("--name", default="quality_equal_time")
    ap.add_argument("--render", type=Path, metavar="RESULT.json", help="only rewrite the .md of a saved result")
    args = ap.parse_args(argv)
    if args.render:
        payload = json.loads(args.render.read_text())
        args.render.with_suffix(".md").write_text(markdown(payload).rstrip() + "\n")
        return payload

    from leangen.registry import get_preset
    from leangen.train import TrainOptions, train
    from leangen.utils.allocator import retain_freed_cpu_memory

    retain_freed_cpu_memory()
    dev = activate_policy(args)
    if dev.type == "cpu":
        torch.set_num_threads(args.threads)
    metrics = [m for m in args.metrics.split(",") if m]
    resolutions = {get_preset(p).resolution for p in args.presets}
    if len(resolutions) != 1:
        raise SystemExit(f"presets of different resolutions cannot share a dataset: {sorted(resolutions)}")
    data = args.data
    if data == "openmoji":
        data = f"openmoji-{args.resolution or resolutions.pop()}"

    rows = []
    for name in args.presets:
        print(f"== {name}: {args.minutes:g} min on {dev}", file=sys.stderr, flush=True)
        gemm = machine_check(dev)
        t0 = time.time()
        res = train(TrainOptions(preset=name, data=data, outdir=args.outdir, kimg=100_000, minutes=args.minutes,
                                 metrics=metrics, seed=args.seed, device=str(dev), progress=False, snap=1000))
        wall = time.time() - t0
        opts = json.loads((res.run_dir / "training_options.json").read_text())
        row: dict[str, Any] = dict(name=name, family=get_preset(name).family, run_dir=str(res.run_dir),
                                   minutes=args.minutes, kimg=res.cur_nimg / 1000, steps=res.step,
                                   batch=opts["batch"], params_G=opts["run"]["params"].get("G"),
                                   wall_s=wall, gemm_ms=gemm)
        for m in metrics:
            rec = last_metric(res.run_dir, m)
            row[m] = None if rec is None else float(rec["results"][m])
        rows.append(row)
        print(f"   {row}", file=sys.stderr, flush=True)

    key = metrics[0]
    observed = [r["family"] for r in sorted(rows, key=lambda r: float("inf") if r[key] is None else r[key])]
    expected = [f for f in PAPER_ORDER if f in observed]
    payload = dict(environment=environment(dev), device_type=dev.type, threads=args.threads, data=data,
                   minutes=args.minutes, metrics=metrics, rows=rows, observed_order=observed,
                   paper_order=expected, matches_paper=observed == expected)
    md = markdown(payload)
    jpath, mpath = write_results(args.name, device_tag(dev), payload, md)
    print(md)
    print(f"\nwrote {jpath} and {mpath}", file=sys.stderr)
    return payload


if __name__ == "__main__":
    main()
