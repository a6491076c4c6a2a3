"""Subscale Pixel Networks vs the full-image autoregressive baseline: training memory, step time, sampling, bits/dim.

Parts (each merges its section into ``benchmarks/results/spn-<device>.json`` and rewrites the Markdown):

- ``memory``: one training step (forward of the training loss + backward) of the baseline and of SPN with S=4
  and S=8 at 64², 128², 256². Peak memory: live tensor storages (``leangen.profile``'s dispatch-mode tracker) on
  CPU, ``torch.cuda.max_memory_allocated`` on GPU, plus weights, gradients and inputs. Step time: interleaved
  round-robin in one process (median). All models share the decoder width and depth (``--hidden``, ``--blocks``).
  ``memory_ratio_256_s8`` = baseline peak ÷ SPN peak at 256², S=8.
- ``sampling``: cached incremental vs naive sampling (same uniforms, so the same images): whole images of the
  tiny presets, and one slice's decoder at the memory benchmark's width (an image is S² such slices).
- ``quality``: bits/dim on the held-out validation split of OpenMoji 32² for the tiny SPN and baseline presets at
  8 and 5 bits (equal parameters within 4 %, equal steps and batch = equal images seen), trained through
  ``leangen.train``.

Usage::

    python benchmarks/spn.py --parts memory sampling          # a few minutes on 2 CPU cores
    python benchmarks/spn.py --parts quality --steps 600      # ~10 minutes on 2 CPU cores
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (RESULTS, activate_policy, add_policy_args, device_tag,  # noqa: E402
                     environment, fmt, md_table, write_results)
from pixel_synthesis import machine_check  # noqa: E402

NAME = "spn"


def build(kind: str, res: int, s: int, bits: int, hidden: int, blocks: int, kernel: int) -> torch.nn.Module:
    from leangen.models.ar_decoder import ARDecoder
    from leangen.models.spn import SubscalePixelNetwork

    if kind == "baseline":
        return ARDecoder(resolution=res, bits=bits, hidden=hidden, blocks=blocks, kernel=kernel)
    return SubscalePixelNetwork(resolution=res, bits=bits, subscale=s, hidden=hidden, blocks=blocks, kernel=kernel,
                                cond_hidden=hidden, cond_blocks=max(1, blocks // 2), cond_kernel=3)


def loss(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What the likelihood objective minimises (SPN: the one-slice training estimate)."""
    fn = getattr(model, "training_log_prob", model.log_prob)
    return -fn(x).float().mean()


def train_peak_mb(model: torch.nn.Module, x: torch.Tensor, device: torch.device) -> tuple[float, str]:
    """Peak MB of one training step: weights + input + the peak of forward and backward (gradients included)."""
    from leangen.profile import state_bytes
    from leangen.profile.dispatch import CountingMode

    model.zero_grad(set_to_none=True)
    base = state_bytes(model) + x.untyped_storage().nbytes()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        loss(model, x).backward()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - before
        model.zero_grad(set_to_none=True)
        return (base + peak) / 2 ** 20, "cuda_max_memory_allocated"
    mode = CountingMode(track_memory=True)
    with mode:
        loss(model, x).backward()
        grads = [p.grad for p in model.parameters()]  # still live at the end of the step, so counted in the peak
    del grads
    model.zero_grad(set_to_none=True)
    return (base + mode.peak) / 2 ** 20, "live_tensor_storages"


def time_steps(models: list[torch.nn.Module], xs: list[torch.Tensor], device: torch.device, warmup: int,
               repeats: int) -> list[float]:
    """Median ms of a training step (forward + backward) per model, rounds interleaved round-robin."""
    times: list[list[float]] = [[] for _ in models]
    for r in range(warmup + repeats):
        for k in range(len(models)):
            i = (r + k) % len(models)
            models[i].zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            loss(models[i], xs[i]).backward()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if r >= warmup:
                times[i].append((time.perf_counter() - t0) * 1e3)
    return [statistics.median(t) for t in times]


def part_memory(args: argparse.Namespace, dev: torch.device) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for res in args.resolutions:
        configs = [("baseline", 1)] + [("spn", s) for s in args.subscales if res % s == 0]
        models, xs = [], []
        gemm = machine_check(dev)
        for kind, s in configs:
            torch.manual_seed(0)
            m = build(kind, res, s, 8, args.hidden, args.blocks, args.kernel).to(dev).train()
            x = torch.randint(0, 256, (args.batch, 3, res, res), dtype=torch.uint8, device=dev)
            mb, method = train_peak_mb(m, x, dev)
            models.append(m)
            xs.append(x)
            rows.append(dict(model=kind, resolution=res, S=s, batch=args.batch, params=m.num_params(),
                             peak_train_mem_mb=round(mb, 2), mem_method=method, gemm_ms=round(gemm, 1)))
            print(f"  {res}² {kind} S={s}: {mb:.1f} MB", file=sys.stderr, flush=True)
        ms = time_steps(models, xs, dev, args.warmup, args.repeats)
        for row, t in zip(rows[-len(configs):], ms):
            row["step_ms"] = round(t, 1)
            print(f"  {res}² {row['model']} S={row['S']}: {t:.0f} ms/step", file=sys.stderr, flush=True)
        del models, xs
    peak = {(r["model"], r["resolution"], r["S"]): r["peak_train_mem_mb"] for r in rows}
    ratio = None
    if ("baseline", 256, 1) in peak and ("spn", 256, 8) in peak:
        ratio = round(peak[("baseline", 256, 1)] / peak[("spn", 256, 8)], 2)
    return dict(rows=rows, memory_ratio_256_s8=ratio,
                setting=dict(batch=args.batch, hidden=args.hidden, blocks=args.blocks, kernel=args.kernel,
                             cond_hidden=args.hidden, cond_blocks=max(1, args.blocks // 2), bits=8,
                             threads=torch.get_num_threads(), warmup=args.warmup, repeats=args.repeats))


def _randomize_output(m: torch.nn.Module) -> None:
    """Non-zero output layer: an untrained decoder is exactly uniform, which would make every draw trivial."""
    with torch.no_grad():
        for p in m.decoder.out.parameters():  # type: ignore[union-attr]
            p.normal_(0, 0.3)


def _paths(run: Any, device: torch.device) -> dict[str, Any]:
    """Time ``run(path)`` for the cached, naive and static (fixed-shape step, a CUDA graph on CUDA) samplers; the
    static path runs twice and its second run is timed (the first captures the graph)."""
    out: dict[str, Any] = {}
    for path in ("cached", "naive", "static", "static"):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        out[path] = run(path)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        out[f"s_{path}"] = time.perf_counter() - t0
    return dict(cached_s=round(out["s_cached"], 3), naive_s=round(out["s_naive"], 3),
                static_s=round(out["s_static"], 3), speedup=round(out["s_naive"] / out["s_cached"], 1),
                static_speedup=round(out["s_naive"] / out["s_static"], 1),
                identical=bool(torch.equal(out["cached"], out["naive"])),
                static_identical=bool(torch.equal(out["static"], out["cached"])))


def part_sampling(args: argparse.Namespace, dev: torch.device) -> dict[str, Any]:
    """Cached vs naive: whole images of the tiny presets, and one slice / one image at the benchmark width."""
    from leangen.registry import build as build_preset
    from leangen.ops.masked_static import StaticSampler

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # sub-pixel steps are tiny ops: intra-op threads only add synchronisation
    rows = []
    gemm = machine_check(dev)
    for name in args.sample_presets:
        torch.manual_seed(0)
        m = build_preset(name, "model").to(dev).eval()
        _randomize_output(m)
        row = _paths(lambda path: m.sample(1, torch.Generator().manual_seed(0), cached=path != "naive",
                                           static=path == "static"), dev)
        rows.append(dict(model=name, resolution=m.img_resolution, S=getattr(m, "subscale", 1), unit="image", **row))
        print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    for spec in args.sample_configs:  # kind:res:S at the memory benchmark's width and depth
        kind, res, s = spec.split(":")
        torch.manual_seed(0)
        m = build(kind, int(res), int(s), 8, args.hidden, args.blocks, args.kernel).to(dev).eval()
        _randomize_output(m)
        n = int(res) // int(s)
        u = torch.rand(1, n, n, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        cond = torch.randn(1, args.hidden, n, n, device=dev) if kind == "spn" else None
        static = StaticSampler(m.decoder, 1, n, n, 1.0, with_cond=cond is not None)
        row = _paths(lambda path: static.sample(u, cond) if path == "static" else
                     m.decoder.sample(1, n, n, u, cond, 1.0, path == "cached"), dev)
        unit = f"one {n}x{n} slice" if kind == "spn" else "image"
        rows.append(dict(model=f"{kind} (width {args.hidden}, {args.blocks} blocks)", resolution=int(res), S=int(s),
                         unit=unit, **row))
        print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    torch.set_num_threads(threads)
    return dict(rows=rows, threads=1, gemm_ms=round(gemm, 1))


CHAIN = ("spn-tiny-32-first", "spn-tiny-32-upscale", "spn-tiny-32-depth")


def part_quality(args: argparse.Namespace, dev: torch.device) -> dict[str, Any]:
    """Train each preset (``chain`` = the three tiny upscaling stages, then evaluated as one SPNChain)."""
    import leangen
    from leangen.data.batch import collate
    from leangen.models.base import image_grid
    from leangen.models.spn_chain import SPNChain
    from leangen.tasks import get_task
    from leangen.train import TrainOptions, train

    td = get_task("likelihood").open(args.data, 32)
    val = collate([td.val[i] for i in range(len(td.val))]).image

    def bpd(model: Any) -> float:
        with torch.no_grad():
            return torch.cat([model.bits_per_dim(torch.bitwise_right_shift(val[i:i + 64], 8 - model.bits).to(dev))
                              for i in range(0, len(val), 64)]).mean().item()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.quality_presets:
            gemm = machine_check(dev)
            t0 = time.perf_counter()
            models = []
            for name in (CHAIN if preset == "chain" else (preset,)):
                res = train(TrainOptions(preset=name, data=args.data, outdir=tmp, steps=args.steps, batch=args.qbatch,
                                         metrics=[], device=str(dev), progress=False, seed=0, snap=10 ** 6))
                models.append(leangen.load(res.run_dir).to(dev))
            wall = time.perf_counter() - t0
            model = SPNChain.from_stages(*models) if preset == "chain" else models[0]
            row = dict(preset="chain: " + " + ".join(CHAIN) if preset == "chain" else preset, bits=model.bits,
                       params=model.num_params(), steps=args.steps, batch=args.qbatch, train_s=round(wall, 1),
                       val_images=len(val), val_bpd=round(bpd(model), 4), gemm_ms=round(gemm, 1))
            if preset == "chain":
                row["stage_val_bpd"] = [round(bpd(m), 4) for m in models]
                torch.set_num_threads(1)
                grid = model.generate(list(range(8)), output_type="pt")
                torch.set_num_threads(args.threads)
                from PIL import Image

                Image.fromarray(image_grid(grid, 8)).save(RESULTS / f"{NAME}-chain-samples-{device_tag(dev)}.png")
            rows.append(row)
            print(f"  {row['preset']}: {row['val_bpd']:.4f} bits/dim on {len(val)} val images ({wall:.0f} s)",
                  file=sys.stderr, flush=True)
    return dict(rows=rows, data=args.data)


def markdown(p: dict[str, Any]) -> str:
    env = p["environment"]
    out = [f"## SPN vs full-image AR baseline\n\nDevice: **{env['device_name']}** (`{env['device']}`), PyTorch "
           f"{env['torch_version']}, {env['date']}. Machine check (10 GEMMs of 1024², lower = quieter) per section."]
    if "memory" in p:
        m = p["memory"]
        st = m["setting"]
        out.append(f"\n### Training step: peak memory and time\n\nbatch {st['batch']}, 8-bit, decoder width "
                   f"{st['hidden']} × {st['blocks']} blocks ({st['kernel']}×{st['kernel']} masked), conditioning "
                   f"width {st['cond_hidden']} × {st['cond_blocks']} blocks, {st['threads']} thread(s); median of "
                   f"{st['repeats']} interleaved steps after {st['warmup']}. SPN steps use the one-slice training "
                   f"estimate. **Baseline ÷ SPN peak at 256², S=8: {fmt(m['memory_ratio_256_s8'], '.1f', '×')}**")
        heads = ["model", "resolution", "S", "params", "peak train mem (MB)", "step (ms)", "GEMM check (ms)"]
        out.append(md_table(heads,
                            [[r["model"], r["resolution"], r["S"], r["params"], fmt(r["peak_train_mem_mb"], ".1f"),
                              fmt(r["step_ms"], ".0f"), fmt(r["gemm_ms"], ".0f")] for r in m["rows"]]))
    if "sampling" in p:
        s = p["sampling"]
        out.append(f"\n### Sampling one image: cached vs naive (and static)\n\n1 thread; same uniforms on every "
                   f"path; static: the fixed-shape step of `leangen.ops.masked_static` (a CUDA graph on CUDA; its "
                   f"second run is timed); GEMM check {s['gemm_ms']:.0f} ms.")
        out.append(md_table(["model", "resolution", "S", "unit", "cached (s)", "naive (s)", "speed-up", "identical",
                             "static (s)", "static speed-up", "static identical"],
                            [[r["model"], r["resolution"], r["S"], r["unit"], fmt(r["cached_s"], ".2f"),
                              fmt(r["naive_s"], ".2f"), fmt(r["speedup"], ".1f", "×"), r["identical"],
                              fmt(r.get("static_s"), ".2f"), fmt(r.get("static_speedup"), ".1f", "×"),
                              r.get("static_identical", "")] for r in s["rows"]]))
    if "quality" in p:
        q = p["quality"]
        out.append(f"\n### Bits/dim on the held-out split of `{q['data']}`\n\nTiny presets (SPN vs baseline within 4 % "
                   f"of each other's parameters); exact bits/dim on every validation image; train (s) is wall clock "
                   f"on the shared machine (see the GEMM check). Same steps × batch = same images seen.")
        out.append(md_table(["preset", "bits", "params", "steps × batch", "train (s)", "val images", "val bits/dim",
                             "GEMM check (ms)"],
                            [[r["preset"], r["bits"], r["params"], f"{r['steps']} × {r['batch']}",
                              fmt(r["train_s"], ".0f"), r["val_images"], fmt(r["val_bpd"], ".3f"),
                              fmt(r["gemm_ms"], ".0f")]
                             for r in q["rows"]]))
        for r in q["rows"]:
            if "stage_val_bpd" in r:
                out.append(f"Chain stages' bits/dim (a + b + c): {' + '.join(f'{b:.3f}' for b in r['stage_val_bpd'])}"
                           f" = {sum(r['stage_val_bpd']):.3f} (chain, exact: {r['val_bpd']:.3f}); samples: "
                           f"`{NAME}-chain-samples-<device>.png`.")
    return "\n\n".join(out)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    add_policy_args(ap)
    ap.add_argument("--parts", nargs="+", default=["memory", "sampling"], choices=["memory", "sampling", "quality"])
    ap.add_argument("--resolutions", nargs="+", type=int, default=[64, 128, 256])
    ap.add_argument("--subscales", nargs="+", type=int, default=[4, 8])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--kernel", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sample-presets", nargs="+", default=["spn-tiny-32", "ar-tiny-32"])
    ap.add_argument("--sample-configs", nargs="+", default=["spn:64:4", "spn:256:8"],
                    help="kind:resolution:S at --hidden/--blocks width; SPN rows time one slice's decoder")
    ap.add_argument("--quality-presets", nargs="+",
                    default=["spn-tiny-32", "ar-tiny-32", "spn-tiny-32-5bit", "ar-tiny-32-5bit"])
    ap.add_argument("--data", default="openmoji-32")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--qbatch", type=int, default=32)
    args = ap.parse_args(argv)

    dev = activate_policy(args)
    torch.set_num_threads(args.threads)
    tag = device_tag(dev)
    path = RESULTS / f"{NAME}-{tag}.json"
    payload: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    payload.update(title="SPN vs full-image AR baseline", script=Path(sys.argv[0]).name, environment=environment(dev))
    for part in args.parts:
        print(f"{part}:", file=sys.stderr, flush=True)
        result = {"memory": part_memory, "sampling": part_sampling, "quality": part_quality}[part](args, dev)
        if part == "quality" and "quality" in payload:  # other (preset, steps) runs stay
            done = {(r["preset"], r["steps"]) for r in result["rows"]}
            result["rows"] = [r for r in payload["quality"]["rows"]
                              if (r["preset"], r["steps"]) not in done] + result["rows"]
        payload[part] = result
        if part == "memory":  # the top-level keys
            payload["rows"] = payload["memory"]["rows"]
            payload["memory_ratio_256_s8"] = payload["memory"]["memory_ratio_256_s8"]
        write_results(NAME, tag, payload, markdown(payload))
    print(markdown(payload))
    return payload


if __name__ == "__main__":
    main()
