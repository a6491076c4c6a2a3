"""Training speed of the paper presets and the tiny ones (issue 21): sec/kimg, img/s and peak memory of the trainer's
step on synthetic data of the right size (no dataset needed).

What is timed is what the training loop does between two ticks (``leangen.train.loop``): the next batch from the
``BatchStream`` (with its CUDA prefetch), the objective's full step (every phase: lazy R1 and path length on their
intervals, D, G), the statistics summed on the device, the EMA update. ``--warmup`` steps first (cuDNN autotuning,
allocator growth), then ``--steps`` steps, then one device synchronization; sec/kimg = seconds / (steps * batch /
1000), as StyleGAN2-ADA reports it. Each preset runs in its own process with a time limit (``--timeout``), so a preset
that is too slow, runs out of memory or fails costs only its own row; peak memory is that process's (CUDA:
``max_memory_allocated``; CPU: peak resident set size).

Usage::

    python benchmarks/training_speed.py --device cpu                 # the tiny presets (results/training_speed-cpu.*)
    python benchmarks/training_speed.py --device cuda                # paper presets and tiny ones, fp32 and bf16
    python benchmarks/training_speed.py --device cuda --presets stylegan2-256,pixelfolder-256 --precision bf16
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import add_policy_args, device_tag, environment, fmt, md_table, write_results  # noqa: E402
from pixel_synthesis import machine_check  # noqa: E402

PAPER = ["stylegan2-256", "pixelfolder-256", "cips-256", "stylenat-256", "asapnet-cityscapes-256x512",
         "spn-celebahq256-5bit", "resnet9-256", "cyclegan-resnet9-256"]
TINY = ["stylegan2-tiny32", "pixelfolder-tiny32", "cips-tiny32", "stylenat-tiny32", "spn-tiny-32", "ar-tiny-32",
        "resnet-tiny32", "cyclegan-tiny32"]


class Synthetic(torch.utils.data.Dataset):
    """``n`` random items shaped as the task's data: uint8 images, label maps (paired), domain-B images (unpaired)."""

    def __init__(self, n: int, height: int, width: int, classes: int | None, unpaired: bool) -> None:
        g = torch.Generator().manual_seed(0)
        self.image = torch.randint(0, 256, (n, 3, height, width), dtype=torch.uint8, generator=g)
        self.condition = None if classes is None else torch.randint(0, classes, (n, height, width), generator=g)
        self.image_b = torch.randint(0, 256, (n, 3, height, width), dtype=torch.uint8, generator=g) if unpaired else None

    def __len__(self) -> int:
        return len(self.image)

    def get_batch(self, idx: torch.Tensor) -> dict[str, torch.Tensor | None]:
        return {"image": self.image[idx], "condition": None if self.condition is None else self.condition[idx],
                "image_b": None if self.image_b is None else self.image_b[idx]}


def measure(preset_name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Build the preset's objective, run ``args.warmup + args.steps`` loop steps on synthetic data, time the last."""
    from leangen.execution import ExecutionPolicy
    from leangen.presets import get_preset
    from leangen.train.data import BatchStream
    from leangen.train.ema import ema_beta, update_ema
    from leangen.train.objective import get_objective
    from leangen.train.options import TrainOptions, resolve_options
    from leangen.train.runtime import setup_runtime
    from leangen.train.stepstats import TickStats

    policy = ExecutionPolicy.create(args.device, precision=args.precision, tf32=args.tf32,
                                    deterministic=args.deterministic)
    rt = setup_runtime(policy)
    dev = rt.device
    preset = get_preset(preset_name)
    opts = resolve_options(TrainOptions(preset=preset_name, data="synthetic", batch=args.batch, steps=1,
                                        device=str(dev)))
    batch = int(opts.batch)  # type: ignore[arg-type]
    torch.manual_seed(0)
    objective = get_objective(preset.objective)()
    objective.build(preset, rt, opts)
    modules = objective.modules()
    for m in modules.values():
        rt.policy.prepare(m)
    model = objective.eval_model()
    height = int(getattr(model, "img_resolution", None) or preset.resolution)
    width = int(getattr(model, "img_width", None) or height)
    classes = getattr(model, "num_classes", None) if preset.task == "paired" else None
    data = Synthetic(max(2 * batch, 8), height, width, classes, preset.task == "unpaired")
    stream = BatchStream(data, batch, seed=0, device=dev)
    ema = [(modules[t], modules[s]) for t, s in objective.ema_pairs().items()]
    stats = TickStats()

    def step(i: int) -> None:
        stats.add(objective.train_step(stream.next(), i), i)
        beta = ema_beta(batch, i * batch, float(opts.ema_kimg), opts.ema_rampup)  # type: ignore[arg-type]
        for e, s in ema:
            update_ema(e, s, beta)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    for i in range(args.warmup):
        step(i)
    sync()
    gemm_ms = machine_check(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    t0 = time.perf_counter()
    for i in range(args.warmup, args.warmup + args.steps):
        step(i)
    means, bad = stats.read(rt)  # the tick's one read (it synchronizes, so the time includes every queued kernel)
    sync()
    seconds = time.perf_counter() - t0
    kimg = args.steps * batch / 1000
    peak = (torch.cuda.max_memory_allocated(dev) if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"preset": preset_name, "task": preset.task, "resolution": f"{height}x{width}", "batch": batch,
            "params_m": round(sum(p.numel() for k, m in modules.items() for p in m.parameters()
                                  if objective.roles()[k] == "trained") / 1e6, 2),
            "precision": args.precision, "steps": args.steps, "warmup": args.warmup, "seconds": seconds,
            "sec_per_kimg": seconds / kimg, "img_per_sec": kimg * 1000 / seconds,
            "peak_mem_gb": peak / 2 ** 30, "gemm_ms": gemm_ms, "finite": bad is None,
            "stats": {k: round(v, 4) for k, v in means.items()}, "status": "ok"}


def run_one(preset: str, args: argparse.Namespace) -> dict[str, Any]:
    """``measure`` in a child process under ``--timeout``; a row saying what went wrong otherwise."""
    cmd = [sys.executable, __file__, "--one", preset, "--device", args.device, "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--precision", args.precision]
    cmd += ["--batch", str(args.batch)] if args.batch else []
    cmd += ["--deterministic"] if args.deterministic else []
    cmd += [] if args.tf32 is None else ["--tf32" if args.tf32 else "--no-tf32"]
    base = {"preset": preset, "precision": args.precision}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=os.environ.copy())
    except subprocess.TimeoutExpired:
        return {**base, "status": f"timeout after {args.timeout:g} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {**base, "status": f"error: {tail[:300]}"}
    return json.loads(lines[-1])


def markdown(p: dict[str, Any]) -> str:
    env = p["environment"]
    st = p["setting"]
    out = [f"## Training speed\n\nDevice: **{env['device_name']}** (`{env['device']}`), PyTorch {env['torch_version']}, "
           f"{env['date']}, {env['threads']} thread(s). The training loop's step (data stream, every phase of the "
           f"objective, statistics on the device, EMA) on synthetic data, {st['warmup']} warm-up steps then "
           f"{st['steps']} timed steps per preset, each preset in its own process (limit {st['timeout']:g} s). "
           f"sec/kimg as StyleGAN2-ADA reports it; GEMM check: ten 1024² fp32 GEMMs in the same process just before "
           f"the timing (lower = a quieter machine); peak memory: CUDA allocated, or the process's peak RSS on the CPU.\n"]
    heads = ["preset", "task", "resolution", "batch", "params (M)", "precision", "sec/kimg", "img/s", "peak mem (GB)",
             "GEMM check (ms)", "status"]
    out.append(md_table(heads, [[r["preset"], r.get("task", ""), r.get("resolution", ""), r.get("batch", ""),
                                 fmt(r.get("params_m")), r["precision"], fmt(r.get("sec_per_kimg"), ".1f"),
                                 fmt(r.get("img_per_sec"), ".1f"), fmt(r.get("peak_mem_gb"), ".2f"), fmt(r.get("gemm_ms"), ".0f"),
                                 r["status"]]
                                for r in p["rows"]], right_from=3))
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--presets", default=None, help="comma-separated (default: tiny on the CPU, paper + tiny on CUDA)")
    ap.add_argument("--precision", default="fp32", help="fp32 | bf16 | fp16, or a comma list (one row each)")
    ap.add_argument("--batch", type=int, default=None, help="images per step (default: each preset's own)")
    ap.add_argument("--steps", type=int, default=16, help="timed steps (16: one lazy R1 step at the default interval)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per preset and precision")
    ap.add_argument("--tag", default=None, help="results file tag (default: the device's, plus the precision unless fp32)")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    add_policy_args(ap)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args)), flush=True)
        return
    from leangen.execution import ExecutionPolicy

    device = ExecutionPolicy.create(args.device, tf32=args.tf32, deterministic=args.deterministic).activate().device
    presets = args.presets.split(",") if args.presets else (TINY if device.type == "cpu" else PAPER + TINY)
    rows = []
    for precision in args.precision.split(","):
        for preset in presets:
            row = run_one(preset, argparse.Namespace(**{**vars(args), "precision": precision}))
            rows.append(row)
            print(f"{preset:28s} {precision:5s} {fmt(row.get('sec_per_kimg'), '.1f'):>8s} s/kimg "
                  f"{fmt(row.get('img_per_sec'), '.1f'):>8s} img/s  {row['status']}", flush=True)
    payload = {"environment": environment(device),
               "setting": {"steps": args.steps, "warmup": args.warmup, "timeout": args.timeout, "batch": args.batch},
               "rows": rows}
    tag = args.tag or device_tag(device) + ("" if args.precision == "fp32" else "-" + args.precision.replace(",", "-"))
    j, m = write_results("training_speed", tag, payload, markdown(payload))
    print(f"wrote {j} and {m}")


if __name__ == "__main__":
    main()
