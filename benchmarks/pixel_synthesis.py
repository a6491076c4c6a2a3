"""PixelFolder vs CIPS vs StyleGAN2: parameters, MACs, peak memory, latency and throughput, side by side.

Everything runs in ONE process; within each (resolution, batch, dtype) run the three models are timed interleaved
(``leangen.profile.profile_models``), so their ratios are fair even on a noisy shared machine.

Columns beside ours:
- the paper's own figures (``preset.paper``: PixelFolder Table 1 / Table B);
- ``GMACs out-res``: our count under the paper's convention for StyleGAN2 (transposed upsampling convs counted at
  output resolution, fixed blur filters not counted) — measured with a flop-counter variant, not copied;
- ``official (anchor)``: the official implementations' CPU latency at 256, batch 1, 2 threads, quoted (measured
  elsewhere on the official code, not by this script) from ``benchmarks/anchors.json`` with its source and date;
  shown only for runs with that setting.

Ratios: PixelFolder ÷ StyleGAN2 and PixelFolder ÷ CIPS by executed MACs, by the out-res convention, by the paper's
numbers and by measured throughput, and the fraction of the MAC saving realised as speed:
``(throughput_PF / throughput_X) / (MACs_X / MACs_PF)`` (1 = speed follows MACs exactly; target >= 0.8).

Usage::

    python benchmarks/pixel_synthesis.py                       # CPU: 256 at batch 1 and 4, 512 at batch 1 (~6 min)
    python benchmarks/pixel_synthesis.py --device cuda         # GPU defaults: 256/512/1024, fp32 and bf16
    python benchmarks/pixel_synthesis.py --runs 256:1 1024:1:1:3 --exclude cips-1024
    python benchmarks/pixel_synthesis.py --families stylegan2 --name profile_stylegan2

Results: ``benchmarks/results/<name>-<device>.json`` and ``.md`` (rewritten after every run, so an interrupted
benchmark keeps what it measured).
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
from _common import (activate_policy, add_policy_args, build_on, compiled_for_timing, device_tag,  # noqa: E402
                     environment, fmt, md_table, write_results)

ANCHORS_FILE = Path(__file__).resolve().parent / "anchors.json"


def load_anchor(path: Path = ANCHORS_FILE) -> dict[str, Any]:
    """The quoted official-code figures of ``anchors.json`` (not measured here): the setting they apply to, latency
    (s) and executed GMACs per family, and where and when they were measured."""
    doc = json.loads(path.read_text())
    cond = doc["conditions"]
    return {"setting": {k: cond[k] for k in ("device", "resolution", "batch", "threads", "dtype")},
            "latency_s": {a["model"]: a["seconds"] for a in doc["anchors"]},
            "macs_g": {a["model"]: a["gmacs_executed"] for a in doc["anchors"]},
            "quoted": True, "source": doc["source"], "date": doc["date"], "file": f"benchmarks/{path.name}"}


ANCHOR = load_anchor()
# Paper figures a preset does not carry, by preset name; a preset's own ``paper`` dict takes precedence.
PAPER_FALLBACK: dict[str, dict[str, Any]] = {}  # none at present: every preset carries its paper figures
FAMILIES = ("pixelfolder", "cips", "stylegan2")  # PixelFolder first: the ratios are PixelFolder ÷ the others
CPU_RUNS = ["256:1:2:7", "256:4:1:5", "512:1:1:3"]
GPU_RUNS = ["256:1", "256:32", "512:1", "512:16", "1024:1", "1024:4"]


def machine_check(device: torch.device) -> float:
    """Milliseconds for ten 1024x1024 fp32 GEMMs (2.1 GFLOP each) on ``device``: a yardstick saved beside each run.

    Shared machines have busy phases that slow everything several-fold; comparing this figure between runs (or with
    the same check on a quiet machine) tells whether absolute latencies, e.g. against the anchors, can be trusted.
    Ratios inside one interleaved run are much less affected.
    """
    a = torch.randn(1024, 1024, device=device)
    (a @ a).sum().item()  # warm-up (kernel selection, allocation)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(10):
        b = a @ a
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    del b
    return (time.perf_counter() - t0) * 1e3


def parse_run(spec: str, warmup: int, repeats: int) -> dict[str, int]:
    """``RES:BATCH[:WARMUP:REPEATS]`` -> dict."""
    parts = [int(p) for p in spec.split(":")]
    if len(parts) not in (2, 4):
        raise SystemExit(f"bad run {spec!r}: expected RES:BATCH or RES:BATCH:WARMUP:REPEATS")
    w, r = (parts[2], parts[3]) if len(parts) == 4 else (warmup, repeats)
    return dict(resolution=parts[0], batch=parts[1], warmup=w, repeats=r)


def out_res_gmacs(name: str) -> float:
    """GMACs per image of preset ``name`` under the out-res convention, counted on the meta device at batch 1."""
    from leangen.profile import count_macs, example_inputs
    from leangen.registry import get_preset

    with torch.device("meta"):
        model = get_preset(name).build("G").eval()
    args, kwargs = example_inputs(model, 1, "meta")
    return count_macs(model, args, kwargs, convention="output_resolution") / 1e9


def annotate(row: dict[str, Any], anchor_applies: bool) -> None:
    """Add the paper's figures (preset first, then ``PAPER_FALLBACK``) and the official-code anchor to a row."""
    from leangen.registry import get_preset

    paper = {**PAPER_FALLBACK.get(row["name"], {}), **get_preset(row["name"]).paper}
    row["paper_params_m"] = paper.get("params_m")
    row["paper_gmacs"] = paper.get("gmacs")
    row["paper_throughput"] = paper.get("throughput")
    row["paper_note"] = paper.get("note")
    row["anchor_latency_s"] = ANCHOR["latency_s"].get(row["family"]) if anchor_applies else None


def render(path: Path) -> dict[str, Any]:
    """Recompute the paper columns and ratios of a saved result and rewrite its JSON and Markdown (no measuring)."""
    payload = json.loads(path.read_text())
    for run in payload["runs"]:
        for r in run["rows"]:
            annotate(r, run.get("anchor_applies", False))
        run["ratios"] = ratios(run["rows"])
    stem, tag = path.stem.rsplit("-", 1)
    jpath, mpath = write_results(stem, tag, payload, markdown(payload))
    print(f"rewrote {jpath} and {mpath}", file=sys.stderr)
    return payload


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """PixelFolder ÷ each other family, by MACs (three conventions) and by throughput."""
    by_family = {r["family"]: r for r in rows}
    pf = by_family.get("pixelfolder")
    out = []
    if pf is None:
        return out
    for fam in ("stylegan2", "cips"):
        x = by_family.get(fam)
        if x is None:
            continue

        def div(a: Any, b: Any) -> float | None:
            return a / b if a is not None and b else None

        mac = div(pf["gmacs"], x["gmacs"])
        speed = div(pf["throughput"], x["throughput"])
        out.append(dict(pair=f"pixelfolder ÷ {fam}", macs_executed=mac,
                        macs_out_res=div(pf["gmacs_out_res"], x["gmacs_out_res"]),
                        macs_paper=div(pf.get("paper_gmacs"), x.get("paper_gmacs")),
                        params=div(pf["params"], x["params"]),
                        throughput=speed, paper_throughput=div(pf.get("paper_throughput"), x.get("paper_throughput")),
                        # speed-up actually obtained / speed-up the MAC count promises (MACs_X / MACs_PF = 1 / mac)
                        realised=speed * mac if speed is not None and mac is not None else None))
    return out


def run_markdown(run: dict[str, Any]) -> str:
    rows = run["rows"]
    compiled = f", compile {run['compile']}" if run.get("compile", "off") != "off" else ""
    lines = [f"### {run['resolution']}×{run['resolution']}, batch {run['batch']}, {run['dtype']}{compiled}, "
             f"{run['threads']} thread(s) on {run['device_name']}",
             f"median of {run['repeats']} interleaved rounds after {run['warmup']} warm-up; latency per batch; "
             f"peak memory: {', '.join(sorted({r['mem_method'] for r in rows if r.get('mem_method')}))}; "
             f"machine check (10 GEMMs of 1024², lower = quieter machine): {run['gemm_ms_before']:.0f} ms before, "
             f"{run['gemm_ms_after']:.0f} ms after", ""]
    anchor_run = run.get("anchor_applies", False)
    headers = ["model", "params (M)", "paper params (M)", "GMACs executed", "GMACs out-res (ours)", "paper GMACs",
               "peak mem (MB)", "latency (ms)", "images/s", "paper im/s"]
    if anchor_run:
        headers += ["official (anchor) s", "ours ÷ anchor"]
    table = []
    for r in rows:
        cells = [r["name"], fmt(r["params"] and r["params"] / 1e6), fmt(r.get("paper_params_m")), fmt(r["gmacs"]),
                 fmt(r["gmacs_out_res"]), fmt(r.get("paper_gmacs")), fmt(r["peak_mem_mb"], ".0f"),
                 fmt(r["latency_ms"], ".1f") if not r.get("skipped") else "skipped",
                 fmt(r["throughput"], ".3g"), fmt(r.get("paper_throughput"), ".3g")]
        if anchor_run:
            a = r.get("anchor_latency_s")
            cells += [fmt(a), fmt(r["latency_ms"] / 1e3 / a if a and r["latency_ms"] else None, ".2f", "×")]
        table.append(cells)
    lines.append(md_table(headers, table))
    for r in rows:
        if r.get("skipped"):
            lines.append(f"\n*{r['name']} skipped: {r['skipped']}*")
    notes = [f"{r['name']}: {r['paper_note']}" for r in rows if r.get("paper_note")]
    if notes:
        lines.append("\nPaper notes: " + "; ".join(notes) + ".")
    if run["ratios"]:
        lines.append("")
        rt = [[q["pair"], fmt(q["params"]), fmt(q["macs_executed"]), fmt(q["macs_out_res"]), fmt(q["macs_paper"]),
               fmt(q["throughput"], ".2f", "×"), fmt(q["paper_throughput"], ".2f", "×"), fmt(q["realised"], ".2f")]
              for q in run["ratios"]]
        lines.append(md_table(["ratio", "params", "MACs executed", "MACs out-res", "MACs paper",
                               "throughput (measured)", "throughput (paper)", "speed-up realised ÷ MAC saving"], rt))
    return "\n".join(lines)


def markdown(payload: dict[str, Any]) -> str:
    env = payload["environment"]
    head = [f"## {payload['title']}", "",
            f"Device: **{env['device_name']}** (`{env['device']}`), PyTorch {env['torch_version']}, "
            f"{payload['threads']} thread(s), {env['date']}. Command: "
            f"`{' '.join(['python', 'benchmarks/' + payload['script'], *env['argv']])}`.", "",
            "GMACs executed: multiply-adds of the ops that run (convs incl. depthwise blur, matmuls; element-wise ops "
            "not counted). GMACs out-res: the convention of PixelFolder's Table 1 (StyleGAN2's upsampling convs at "
            "output resolution, blur filters not counted), counted by us. Paper columns are the paper's own numbers "
            "(its GPU is not stated). Random weights (speed does not depend on them); `noise_mode=const`."]
    if payload["device_type"] == "cpu":
        head.append("\nCPU figures: compare within a run (ratios); absolute latencies depend on the machine.")
        alloc = env.get("cpu_allocator", "default")
        head.append(f"CPU allocator: `{alloc}` " + ("(freed memory kept in the process, as the `leangen` CLI does; "
                                                     "`--cpu-allocator default` for the C library's defaults)."
                                                     if alloc == "retain" else "(the C library's defaults)."))
        if alloc == "retain" and any(r.get("anchor_applies") for r in payload["runs"]):
            head.append("The official code's anchor latencies were taken with the C library's defaults: the "
                        "like-for-like *ours ÷ anchor* figure is the one from a `--cpu-allocator default` run.")
        if any(r.get("anchor_applies") for r in payload["runs"]):
            head.append(f"Official (anchor) latencies are quoted from `{ANCHOR['file']}` (the official code, measured "
                        f"elsewhere in {ANCHOR['date']}; source and conditions in that file), not measured here.")
    body = [run_markdown(run) for run in payload["runs"]]
    return "\n".join(head) + "\n\n" + "\n\n".join(body) + "\n"


def main(argv: list[str] | None = None, default_name: str = "pixel_synthesis",
         default_families: tuple[str, ...] = FAMILIES,
         title: str = "PixelFolder vs CIPS vs StyleGAN2") -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    add_policy_args(ap, compile=True)
    ap.add_argument("--runs", nargs="+", metavar="RES:BATCH[:WARMUP:REPEATS]",
                    help=f"runs to do (default CPU: {' '.join(CPU_RUNS)}; GPU: {' '.join(GPU_RUNS)})")
    ap.add_argument("--dtypes", nargs="+", choices=["fp32", "bf16", "fp16"],
                    help="dtypes (default: fp32 on CPU, fp32 and bf16 on GPU)")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (default 2, as the anchors)")
    ap.add_argument("--warmup", type=int, default=None, help="default warm-up rounds (CPU 2, GPU 5)")
    ap.add_argument("--repeats", type=int, default=None, help="default timed rounds (CPU 5, GPU 20)")
    ap.add_argument("--families", nargs="+", default=list(default_families), help="model families to compare")
    ap.add_argument("--exclude", nargs="*", default=[], metavar="PRESET", help="presets to leave out")
    ap.add_argument("--name", default=default_name, help="result file stem")
    ap.add_argument("--cpu-allocator", choices=["retain", "default"], default="retain",
                    help="retain: keep freed CPU memory in the process, as the leangen CLI does (no page faults on "
                         "large activations); default: the C library's defaults, as the official code was timed")
    ap.add_argument("--render", type=Path, metavar="RESULT.json",
                    help="only recompute paper columns/ratios of a saved result and rewrite its .json and .md")
    args = ap.parse_args(argv)
    if args.render:
        return render(args.render)
    if args.cpu_allocator == "retain":
        from leangen.utils.allocator import retain_freed_cpu_memory

        retain_freed_cpu_memory()

    from leangen.profile import profile_models
    from leangen.registry import PRESETS, get_preset

    dev = activate_policy(args)
    gpu = dev.type == "cuda"
    warmup = args.warmup if args.warmup is not None else (5 if gpu else 2)
    repeats = args.repeats if args.repeats is not None else (20 if gpu else 5)
    runs = [parse_run(s, warmup, repeats) for s in (args.runs or (GPU_RUNS if gpu else CPU_RUNS))]
    dtypes = args.dtypes or (["fp32", "bf16"] if gpu else ["fp32"])
    torch.set_num_threads(args.threads)
    get_preset("stylegan2-256")  # loads the registry
    payload: dict[str, Any] = dict(title=title, script=Path(sys.argv[0]).name,
                                   environment=environment(dev), device_type=dev.type, threads=args.threads,
                                   anchor=ANCHOR, runs=[])
    tag = device_tag(dev)
    out_res_cache: dict[str, float] = {}
    t_start = time.time()
    for dtype in dtypes:
        for spec in runs:
            res, batch = spec["resolution"], spec["batch"]
            names = [n for n in (f"{f}-{res}" for f in args.families) if n in PRESETS and n not in args.exclude]
            if not names:
                print(f"no presets for {res}: skipped", file=sys.stderr)
                continue
            print(f"[{time.time() - t_start:6.0f}s] {res}px batch {batch} {dtype}: {', '.join(names)}", file=sys.stderr,
                  flush=True)
            gemm_before = machine_check(dev)
            models: list[Any] = names
            if args.compile != "off":  # built here, compiled and warmed up before the timing
                models = compiled_for_timing([build_on(n, dev) for n in names], batch, dtype, names)
            rows = profile_models(models, device=dev, batch=batch, dtype=dtype,  # type: ignore[arg-type]
                                  warmup=spec["warmup"], repeats=spec["repeats"],
                                  threads=args.threads if not gpu else None,
                                  log=lambda m: print("    " + m, file=sys.stderr, flush=True))
            for r, n in zip(rows, names):
                r["name"] = n  # rows of built (compiled) models are named after their class
            del models
            gemm_after = machine_check(dev)
            setting = dict(device=dev.type, resolution=res, batch=batch, threads=args.threads, dtype=dtype)
            if args.compile != "off":
                setting["compile"] = args.compile  # never the anchors' (eager) setting
            anchor_applies = setting == ANCHOR["setting"]
            for r in rows:
                if r["name"] not in out_res_cache:
                    out_res_cache[r["name"]] = out_res_gmacs(r["name"])
                r["gmacs_out_res"] = out_res_cache[r["name"]]
                annotate(r, anchor_applies)
                print(f"    {r['name']:<18} {r['gmacs']:8.2f} GMACs  "
                      + (f"{r['latency_ms']:10.1f} ms  {r['throughput']:8.3f} im/s" if r["latency_ms"] else
                         f"skipped: {r['skipped']}"), file=sys.stderr, flush=True)
            run = dict(resolution=res, batch=batch, dtype=dtype, compile=args.compile, warmup=spec["warmup"],
                       repeats=spec["repeats"],
                       threads=rows[0]["threads"], device_name=rows[0]["device_name"], anchor_applies=anchor_applies,
                       gemm_ms_before=gemm_before, gemm_ms_after=gemm_after, rows=rows, ratios=ratios(rows))
            payload["runs"].append(run)
            payload["elapsed_s"] = round(time.time() - t_start, 1)
            jpath, mpath = write_results(args.name, tag, payload, markdown(payload))
    if not payload["runs"]:
        raise SystemExit("nothing was measured (no presets for the requested runs)")
    print(f"wrote {jpath} and {mpath} ({time.time() - t_start:.0f} s)", file=sys.stderr)
    print(markdown(payload))
    return payload


if __name__ == "__main__":
    main()
