"""Neighborhood attention backends vs dense attention (SDPA): time and peak memory, forward and forward+backward.

Sizes 32²..256², k = 7, 4 heads of width 32, batch 1 (StyleNAT-256's last level), without dilation and with StyleNAT's
dilation R/8. All backends of one (size, dilation, pass) are timed interleaved round-robin in this process; a GEMM
machine check is saved before and after (as in ``pixel_synthesis.py``). Memory: peak of live tensor storages over
one call (CPU) or ``max_memory_allocated`` (CUDA), inputs included.

Skipped, and said so in the output: dense SDPA when its multiply-adds would take too long (> ``--max-dense-gmacs``);
``reference`` (dense scores + mask, O(N^2) memory) above 64²; ``flex`` on CPU above 64² (PyTorch's eager flex
attention materializes all N^2 scores; compiled flex is used on CUDA only) and for the backward pass on CPU (not
supported by PyTorch).

Usage::

    python benchmarks/neighborhood_attention.py                 # CPU, ~5 min
    python benchmarks/neighborhood_attention.py --device cuda --sizes 32 64 128 256

Results: ``benchmarks/results/neighborhood_attention-<device>.json`` and ``.md``.
"""
from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (activate_policy, add_policy_args, RESULTS as RESULTS_DIR, device_tag,  # noqa: E402
                     environment, fmt, md_table, write_results)
from pixel_synthesis import machine_check  # noqa: E402

HEADS, HEAD_DIM, KERNEL = 4, 32, 7
BACKENDS = ("sdpa-dense", "reference", "gather", "tiled", "flex")


def skip_reason(backend: str, n: int, dev: torch.device, backward: bool, max_dense_gmacs: float) -> str | None:
    """Why a (backend, size) pair is not run, or None."""
    dense_gmacs = 2 * n * n * HEAD_DIM * HEADS / 1e9 * (3 if backward else 1)
    if backend == "sdpa-dense" and dense_gmacs > max_dense_gmacs:
        return f"dense attention needs {dense_gmacs:.0f} GMACs (limit {max_dense_gmacs:g})"
    if backend == "reference" and n > 4096:
        return f"dense masked reference: {HEADS * n * n * 4 * 3 / 2**30:.1f} GiB of scores"
    if backend == "flex" and dev.type != "cuda":
        if backward:
            return "PyTorch has no flex attention backward on CPU"
        if n > 4096:
            return "eager flex attention on CPU materializes all N^2 scores"
    return None


def make_call(backend: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rpb: torch.Tensor, dilation: int,
              backward: bool) -> Callable[[], Any]:
    from leangen.ops.neighborhood import neighborhood_attention2d

    b, h, hh, ww, d = q.shape

    def forward() -> torch.Tensor:
        if backend == "sdpa-dense":
            flat = [t.reshape(b, h, hh * ww, d) for t in (q, k, v)]
            return F.scaled_dot_product_attention(*flat)
        return neighborhood_attention2d(q, k, v, KERNEL, dilation, rpb, backend=backend)  # type: ignore[arg-type]

    def call() -> Any:
        if not backward:
            with torch.inference_mode():
                return forward()
        for t in (q, k, v, rpb):
            t.grad = None
        out = forward()
        out.backward(torch.ones_like(out))
        return None

    return call


def peak_mb(call: Callable[[], Any], dev: torch.device, inputs_bytes: int) -> float:
    from leangen.profile.dispatch import CountingMode

    gc.collect()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        before = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        out = call()
        torch.cuda.synchronize(dev)
        del out
        return (torch.cuda.max_memory_allocated(dev) - before + inputs_bytes) / 2 ** 20
    mode = CountingMode(track_memory=True)
    with mode:
        out = call()
    del out
    return (mode.peak + inputs_bytes) / 2 ** 20


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def measure(size: int, dilation: int, backward: bool, dev: torch.device, repeats: int, max_dense_gmacs: float,
            log: Callable[[str], None]) -> list[dict[str, Any]]:
    n = size * size
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, HEADS, size, size, HEAD_DIM, generator=gen).to(dev).requires_grad_(backward)
               for _ in range(3))
    rpb = (0.02 * torch.randn(HEADS, 2 * KERNEL - 1, 2 * KERNEL - 1, generator=gen)).to(dev).requires_grad_(backward)
    inputs_bytes = sum(t.numel() * 4 for t in (q, k, v, rpb))
    rows, calls = [], {}
    for backend in BACKENDS:
        reason = skip_reason(backend, n, dev, backward, max_dense_gmacs)
        rows.append(dict(size=size, dilation=dilation, passes="fwd+bwd" if backward else "fwd", backend=backend,
                         skipped=reason, ms=None, peak_mb=None))
        if reason is None:
            calls[backend] = make_call(backend, q, k, v, rpb, dilation, backward)
    for backend, call in calls.items():  # warm-up (block masks, index tables) and memory
        call()
        sync(dev)
        row = next(r for r in rows if r["backend"] == backend)
        # flex attention is a higher-order op that the CPU memory counter cannot follow: no CPU figure for it
        row["peak_mb"] = None if backend == "flex" and dev.type != "cuda" else peak_mb(call, dev, inputs_bytes)
    times: dict[str, list[float]] = {b: [] for b in calls}
    names = list(calls)
    for r in range(repeats):
        for j in range(len(names)):
            backend = names[(r + j) % len(names)]
            sync(dev)
            t0 = time.perf_counter()
            calls[backend]()
            sync(dev)
            times[backend].append(time.perf_counter() - t0)
    for row in rows:
        if row["backend"] in times:
            row["ms"] = statistics.median(times[row["backend"]]) * 1e3
    dense = next(r for r in rows if r["backend"] == "sdpa-dense")
    for row in rows:
        row["speedup_vs_dense"] = dense["ms"] / row["ms"] if dense["ms"] and row["ms"] else None
        log(f"  {size}² d={dilation} {row['passes']:<7} {row['backend']:<10} "
            + (f"{row['ms']:9.2f} ms {fmt(row['peak_mb'], '9.1f')} MB" if row["ms"] else f"skipped: {row['skipped']}"))
    return rows


def markdown(payload: dict[str, Any]) -> str:
    env = payload["environment"]
    lines = [f"## {payload['title']}", "",
             f"Device: **{env['device_name']}** (`{env['device']}`), PyTorch {env['torch_version']}, "
             f"{env['threads']} thread(s), {env['date']}. Command: `python benchmarks/neighborhood_attention.py "
             f"{' '.join(env['argv'])}`.", "",
             f"Batch 1, {HEADS} heads × {HEAD_DIM}, k = {KERNEL}, fp32, relative positional bias on (not for SDPA, "
             f"which is plain dense attention over all N keys). Median of the `repeats` interleaved rounds "
             f"after a warm-up. Machine check (10 GEMMs of 1024², lower = quieter): "
             f"{payload['gemm_ms_before']:.0f} ms before, {payload['gemm_ms_after']:.0f} ms after"
             + "".join(f"; earlier run (other sizes): {e['gemm_ms_before']:.0f} / {e['gemm_ms_after']:.0f} ms"
                       for e in payload.get("earlier_runs", [])) + ".", ""]
    headers = ["size", "dilation", "pass", "backend", "repeats", "time (ms)", "peak mem (MB)", "× faster than dense", "note"]
    table = [[f"{r['size']}²", r["dilation"], r["passes"], r["backend"], r.get("repeats", payload["repeats"]),
              fmt(r["ms"], ".2f"),
              fmt(r["peak_mb"], ".1f"), fmt(r["speedup_vs_dense"], ".1f", "×"), r["skipped"] or ""]
             for r in payload["rows"]]
    lines.append(md_table(headers, table, right_from=4))
    lines.append("\nSkipped cells say why. CPU memory of `flex` is not measured (a higher-order op the counter cannot "
                 "follow).")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    add_policy_args(ap)
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128, 256])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-dense-gmacs", type=float, default=150.0, help="skip dense SDPA above this many GMACs")
    ap.add_argument("--merge", action="store_true",
                    help="keep the saved rows of other sizes (measure large sizes separately, e.g. with fewer repeats)")
    args = ap.parse_args(argv)

    dev = activate_policy(args)
    torch.set_num_threads(args.threads)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    payload: dict[str, Any] = dict(title="Neighborhood attention backends vs dense attention",
                                   environment=environment(dev), repeats=args.repeats, rows=[],
                                   gemm_ms_before=machine_check(dev))
    saved = RESULTS_DIR / f"neighborhood_attention-{device_tag(dev)}.json"
    if args.merge and saved.is_file():
        old = json.loads(saved.read_text())
        payload["rows"] = [r for r in old["rows"] if r["size"] not in args.sizes]
        payload["earlier_runs"] = old.get("earlier_runs", []) + [{k: old.get(k) for k in (
            "environment", "repeats", "gemm_ms_before", "gemm_ms_after", "elapsed_s")}]
    t0 = time.time()
    for size in args.sizes:
        for dilation in sorted({1, max(1, size // 8)}):
            for backward in (False, True):
                rows = measure(size, dilation, backward, dev, args.repeats, args.max_dense_gmacs, log)
                payload["rows"] += [dict(r, repeats=args.repeats) for r in rows]
        payload["gemm_ms_after"] = machine_check(dev)
        payload["elapsed_s"] = round(time.time() - t0, 1)
        write_results("neighborhood_attention", device_tag(dev), payload, markdown(payload))
    print(markdown(payload))
    return payload


if __name__ == "__main__":
    main()
