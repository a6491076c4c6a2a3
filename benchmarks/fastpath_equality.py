"""The fast paths of issue 20 against their reference paths on one device: values (max |difference|) and time.

- modulated convolution: whole StyleGAN2 / PixelFolder generators with ``grouped``, ``scaled`` and ``auto`` paths
  (``leangen.ops.modulated.set_modconv_impl``), fp32 and bf16 autocast, batch 1, 4 and 32 (the times say which path
  ``auto`` should pick on that device: StyleGAN2-ADA's inference uses the grouped form at every batch size in fp32);
- ASAP-Net: the label-lookup MLP (``mlp_lookup=True``) vs the concatenated one-hot input;
- SPN / AR sampling: the fixed-shape step (``static``; a CUDA graph on CUDA) vs cached vs naive, identical draws.

The CPU tests (``tests/test_modulated_fastpath.py``, ``test_fastpath_asapnet.py``, ``test_fastpath_sampling.py``)
hold the same equalities at tiny sizes; this script is the GPU check. ``--tiny`` uses the tiny presets (a quick CPU
run that checks the script itself).

Usage::

    python benchmarks/fastpath_equality.py --device cuda --deterministic
    python benchmarks/fastpath_equality.py --device cpu --tiny --name fastpath_equality_tiny

Results: ``benchmarks/results/<name>-<device>.json`` and ``.md``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (activate_policy, add_policy_args, build_on, device_tag, environment, fmt,  # noqa: E402
                     md_table, run_line, write_results)


def timed(fn: Callable[[], Any], dev: torch.device, repeats: int) -> tuple[Any, float]:
    """``(last result, median ms)`` of ``repeats`` calls after one warm-up."""
    out = fn()
    times = []
    for _ in range(repeats):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        out = fn()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        times.append(time.perf_counter() - t0)
    return out, sorted(times)[len(times) // 2] * 1e3


def check_modconv(presets: list[str], dev: torch.device, repeats: int, batches: list[int]) -> list[dict[str, Any]]:
    from leangen.ops.modulated import set_modconv_impl

    rows = []
    for name in presets:
        torch.manual_seed(0)
        G = build_on(name, dev)
        for batch in batches:
            ws = G.map(torch.randn(batch, G.z_dim, device=dev)).detach()
            for precision in ("fp32", "bf16"):
                outs, ms = {}, {}
                for impl in ("grouped", "scaled", "auto"):
                    set_modconv_impl(G, impl)  # type: ignore[arg-type]
                    with torch.inference_mode(), torch.autocast(dev.type, torch.bfloat16, enabled=precision == "bf16"):
                        outs[impl], ms[impl] = timed(lambda: G.synthesis(ws, noise_mode="const").float(), dev, repeats)
                scale = outs["grouped"].abs().max().item()
                rows.append(dict(model=name, batch=batch, precision=precision, range=scale,
                                 scaled_vs_grouped=(outs["scaled"] - outs["grouped"]).abs().max().item(),
                                 auto_vs_grouped=(outs["auto"] - outs["grouped"]).abs().max().item(),
                                 grouped_ms=ms["grouped"], scaled_ms=ms["scaled"], auto_ms=ms["auto"]))
                print(f"  {rows[-1]}", file=sys.stderr, flush=True)
        del G
    return rows


def check_asapnet(presets: list[str], dev: torch.device, repeats: int) -> list[dict[str, Any]]:
    rows = []
    for name in presets:
        torch.manual_seed(0)
        G = build_on(name, dev)
        labels = torch.randint(0, G.num_classes, (1, G.img_height, G.img_width), device=dev)
        inst = torch.randint(0, 8, labels.shape, device=dev) if G.instance_edge else None
        outs, ms = {}, {}
        for lookup in (True, False):
            G.mlp_lookup = lookup
            with torch.inference_mode():
                outs[lookup], ms[lookup] = timed(lambda: G(labels, inst), dev, repeats)
        rows.append(dict(model=name, lookup_vs_concat=(outs[True] - outs[False]).abs().max().item(),
                         lookup_ms=ms[True], concat_ms=ms[False]))
        print(f"  {rows[-1]}", file=sys.stderr, flush=True)
        del G
    return rows


def check_sampling(presets: list[str], dev: torch.device, resolution: int | None = None) -> list[dict[str, Any]]:
    from leangen.registry import get_preset

    rows = []
    for name in presets:
        torch.manual_seed(0)
        with torch.device(dev):
            m = get_preset(name).build("model", **({"resolution": resolution} if resolution else {})).eval()
        with torch.no_grad():  # untrained heads are zero: perturb so that every draw depends on the network
            for prm in m.parameters():
                prm.add_(0.05 * torch.randn_like(prm))
        outs, ms = {}, {}
        for path in ("cached", "naive", "static"):
            run = (lambda path=path: m.sample(1, torch.Generator().manual_seed(0), cached=path != "naive",
                                              static=path == "static"))
            outs[path], ms[path] = timed(run, dev, 1)  # static: the timed call replays the captured graph
        rows.append(dict(model=name, cached_ms=ms["cached"], naive_ms=ms["naive"], static_ms=ms["static"],
                         cached_identical=bool(torch.equal(outs["cached"], outs["naive"])),
                         static_identical=bool(torch.equal(outs["static"], outs["cached"])),
                         static_speedup_vs_naive=ms["naive"] / ms["static"]))
        print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    return rows


def markdown(p: dict[str, Any]) -> str:
    env = p["environment"]
    ex = env["execution"]
    out = [f"## {p['title']}", "", run_line(env, "fastpath_equality.py"),
           f"TF32 {'on' if ex['tf32'] else 'off'}{', deterministic' if ex['deterministic'] else ''}.", ""]
    if p.get("modconv"):
        out.append("### Modulated convolution paths (whole generators; max |difference| of images in about [-1, 1])\n")
        out.append(md_table(["model", "batch", "precision", "scaled − grouped", "auto − grouped", "grouped (ms)",
                             "scaled (ms)", "auto (ms)"],
                            [[r["model"], r["batch"], r["precision"], fmt(r["scaled_vs_grouped"], ".2e"),
                              fmt(r["auto_vs_grouped"], ".2e"), fmt(r["grouped_ms"], ".2f"),
                              fmt(r["scaled_ms"], ".2f"), fmt(r["auto_ms"], ".2f")] for r in p["modconv"]],
                            right_from=1))
    if p.get("asapnet"):
        out.append("\n### ASAP-Net: label-lookup MLP vs concatenated input (batch 1)\n")
        out.append(md_table(["model", "max abs(lookup − concat)", "lookup (ms)", "concat (ms)"],
                            [[r["model"], fmt(r["lookup_vs_concat"], ".2e"), fmt(r["lookup_ms"], ".2f"),
                              fmt(r["concat_ms"], ".2f")] for r in p["asapnet"]]))
    if p.get("sampling"):
        out.append("\n### SPN / AR sampling: static (fixed-shape step) vs cached vs naive, one image\n")
        out.append(md_table(["model", "cached (ms)", "naive (ms)", "static (ms)", "static ÷ naive speed-up",
                             "cached = naive", "static = cached"],
                            [[r["model"], fmt(r["cached_ms"], ".0f"), fmt(r["naive_ms"], ".0f"),
                              fmt(r["static_ms"], ".0f"), fmt(r["static_speedup_vs_naive"], ".1f", "×"),
                              r["cached_identical"], r["static_identical"]] for r in p["sampling"]]))
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    add_policy_args(ap)
    ap.add_argument("--tiny", action="store_true", help="tiny presets (checks the script on a CPU)")
    ap.add_argument("--parts", nargs="+", default=["modconv", "asapnet", "sampling"],
                    choices=["modconv", "asapnet", "sampling"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batches", type=int, nargs="+", default=None,
                    help="modulated-conv batch sizes (default 1 4 32; 1 4 with --tiny)")
    ap.add_argument("--name", default="fastpath_equality")
    args = ap.parse_args(argv)
    dev = activate_policy(args)
    gen = ["stylegan2-tiny32", "pixelfolder-tiny32"] if args.tiny else ["stylegan2-256", "pixelfolder-256"]
    asap = ["asapnet-tiny32"] if args.tiny else ["asapnet-facades-512", "asapnet-facades-1024",
                                                  "asapnet-cityscapes-256x512", "asapnet-cityscapes-1024x2048"]
    samplers = ["spn-tiny-32", "ar-tiny-32"]
    payload: dict[str, Any] = dict(title="Fast paths vs reference paths", environment=environment(dev))
    if "modconv" in args.parts:
        batches = args.batches or ([1, 4] if args.tiny else [1, 4, 32])
        payload["modconv"] = check_modconv(gen, dev, args.repeats, batches)
        write_results(args.name, device_tag(dev), payload, markdown(payload))
    if "asapnet" in args.parts:
        payload["asapnet"] = check_asapnet(asap, dev, args.repeats)
        write_results(args.name, device_tag(dev), payload, markdown(payload))
    if "sampling" in args.parts:
        payload["sampling"] = check_sampling(samplers, dev, 8 if args.tiny else None)
        write_results(args.name, device_tag(dev), payload, markdown(payload))
    print(markdown(payload))
    return payload


if __name__ == "__main__":
    main()
