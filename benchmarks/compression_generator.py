"""Condense -> prune -> distill on an unconditional StyleGAN2 generator (the compression stretch goal): teacher vs
student, FID on samples, CPU latency.

What runs (all in this process): (1) GAN training of the ``stylegan2-tiny32`` teacher on ``openmoji-32``; (2)
``leangen.compress.run_pipeline`` on it: condensation (the ``condense_distill`` objective: a copy with a
``ChannelScale`` gate per width learns to reproduce the teacher on latents while a group lasso shrinks the gates),
structural pruning to a MACs budget (teacher GMACs / ``--ratio``) or to ``--target-fps`` measured on ONNX Runtime at
2 threads, distillation of the pruned student from the condensed teacher on latents (output L1 + the kept channels'
features), evaluated every ``--eval-every`` steps, keeping the best and stopping at ``--quality-target``; (3) teacher
and student timed interleaved at batch 1 in eager PyTorch and ONNX Runtime at 1 and 2 threads.

Quality: ``--metric`` (default ``fid1k``: 1,000 samples, seeds 0..999, against the real images of the task's metric
split; the same protocol for teacher and student). Honest scope: a 2-core CPU trains this tiny StyleGAN2 for a few
thousand steps only, so the teacher is far from converged; the figure says whether the compressed student keeps
*that* teacher's quality, not what a converged StyleGAN2 reaches.

Usage::

    python benchmarks/compression_generator.py                  # ~40 min on 2 cores
    python benchmarks/compression_generator.py --data openmoji-32-n64 --steps 2 2 2 --eval-every 1 --metric fid32 \
        --repeats 1 --workdir /tmp/leangen-gan-compression-smoke --results-dir /tmp/leangen-gan-compression-smoke

Results: ``benchmarks/results/compression_generator-cpu.json`` and ``.md`` (``--results-dir`` elsewhere).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, environment, fmt, md_table, write_results  # noqa: E402
from compression import train_teacher  # noqa: E402
from pixel_synthesis import machine_check  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="stylegan2-tiny32")
    p.add_argument("--data", default="openmoji-32")
    p.add_argument("--steps", type=int, nargs=3, default=[2000, 300, 1500], metavar=("TEACHER", "CONDENSE", "DISTILL"))
    p.add_argument("--metric", default="fid1k")
    p.add_argument("--ratio", type=float, default=4.0, help="MACs budget = teacher GMACs / ratio")
    p.add_argument("--target-fps", type=float, default=None, help="... or this many images/s on ONNX Runtime, 2 threads")
    p.add_argument("--sparsity", type=float, default=1.0)
    p.add_argument("--min-channels", type=int, default=4)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--quality-target", type=float, default=1.1)
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cpu", help="where the three training stages run; latency is timed on the CPU")
    p.add_argument("--results-dir", type=Path, default=RESULTS)
    p.add_argument("--workdir", default="/tmp/leangen-gan-compression")
    p.add_argument("--name", default="compression_generator")
    args = p.parse_args()

    import leangen
    from leangen.compress.deploy import size_report
    from leangen.compress.pipeline import CompressOptions, run_pipeline

    torch.set_num_threads(2)
    t0 = time.time()
    say = lambda m: print(f"[{time.time() - t0:6.0f}s] {m}", file=sys.stderr, flush=True)  # noqa: E731
    work = Path(args.workdir)
    teacher_steps, condense_steps, distill_steps = args.steps
    teacher_run = train_teacher(args.preset, args.data, work / "teacher", teacher_steps, args.device, say)
    teacher_gmacs = size_report(leangen.load(teacher_run))["gmacs"]
    gemm_before = machine_check(torch.device("cpu"))
    opts = CompressOptions(teacher=str(teacher_run), data=args.data, outdir=str(work / "compress"),
                           condense_steps=condense_steps, distill_steps=distill_steps, sparsity=args.sparsity,
                           sparsity_ramp=max(condense_steps // 2, 1),
                           macs_budget=None if args.target_fps else teacher_gmacs / args.ratio,
                           target_fps=args.target_fps, min_channels=args.min_channels,
                           distill_eval_every=args.eval_every, quality_target=args.quality_target,
                           patience=args.patience, threads=[1, 2], repeats=args.repeats, compile=False,
                           metric=args.metric, device=args.device)
    doc = run_pipeline(opts, log=say)
    gemm_after = machine_check(torch.device("cpu"))
    t, s, steps = doc["teacher"], doc["student"], doc["steps"]
    keys = ("params", "gmacs", "latency_ms_eager_t1", "latency_ms_eager_t2", "latency_ms_ort_t1",
            "latency_ms_ort_t2", "fps_ort_t2", "onnx_max_abs_diff", "value")
    payload = dict(
        benchmark=args.name, environment=environment(torch.device(args.device)), cpu_count=os.cpu_count(),
        preset=args.preset, data=args.data, metric=args.metric,
        teacher={k: t.get(k) for k in keys}, student={k: s.get(k) for k in keys},
        after_condense=steps["condense"]["value"], after_prune=steps["prune"]["value"],
        metric_ratio=s["value"] / t["value"], mac_ratio=doc["mac_ratio"], param_ratio=doc["param_ratio"],
        latency_ratio_ort=t["latency_ms_ort_t2"] / s["latency_ms_ort_t2"],
        latency_ratio_eager=t["latency_ms_eager_t2"] / s["latency_ms_eager_t2"],
        teacher_channels=steps["prune"]["channels_before"], student_channels=steps["prune"]["channels_after"],
        latency_target=doc.get("latency_target"),
        distill_evals=[dict(step=e["step"], value=e["value"]) for e in steps["distill"].get("evals", [])],
        distill_best_step=steps["distill"].get("best_step"), distill_stopped=steps["distill"].get("stopped"),
        gemm_ms_before=gemm_before, gemm_ms_after=gemm_after,
        training=dict(teacher_steps=teacher_steps, condense_steps=condense_steps, distill_steps=distill_steps,
                      ratio=None if args.target_fps else args.ratio, target_fps=args.target_fps,
                      sparsity=args.sparsity, min_channels=args.min_channels, eval_every=args.eval_every,
                      quality_target=args.quality_target, patience=args.patience, repeats=args.repeats,
                      train_device=args.device),
        wall_s=time.time() - t0)
    tag = "cuda" if str(args.device).startswith("cuda") else "cpu"
    if args.results_dir == RESULTS:
        j, m = write_results(args.name, tag, payload, render(payload))
    else:
        args.results_dir.mkdir(parents=True, exist_ok=True)
        j, m = args.results_dir / f"{args.name}-{tag}.json", args.results_dir / f"{args.name}-{tag}.md"
        j.write_text(json.dumps(payload, indent=2) + "\n")
        m.write_text(render(payload).rstrip() + "\n")
    say(f"wrote {j} and {m}")


def render(payload: dict[str, Any]) -> str:
    """The Markdown of one run: teacher, the pipeline's steps and student, then how distillation went."""
    t, s, tr = payload["teacher"], payload["student"], payload["training"]
    metric = payload["metric"]
    rows = [[name, fmt(r["params"] / 1e6, ".3f") if r else "", fmt(r["gmacs"], ".4f") if r else "",
             fmt(r["latency_ms_eager_t2"], ".2f") if r else "", fmt(r["latency_ms_ort_t1"], ".2f") if r else "",
             fmt(r["latency_ms_ort_t2"], ".2f") if r else "", fmt(r["fps_ort_t2"], ".0f") if r else "",
             fmt(value, ".2f")]
            for name, r, value in (("teacher", t, t["value"]), ("after condense", None, payload["after_condense"]),
                                   ("after prune (before distill)", None, payload["after_prune"]),
                                   ("student", s, s["value"]))]
    budget = (f"{tr['target_fps']:.0f} FPS on ONNX Runtime at 2 threads" if tr.get("target_fps") else
              f"teacher GMACs / {tr['ratio']:g}")
    evals = ", ".join(f"{e['step']}: {e['value']:.2f}" for e in payload["distill_evals"])
    md = [f"# Compressing an unconditional generator on CPU ({payload['environment']['device_name']}, torch "
          f"{torch.__version__})", "",
          f"{payload['preset']} trained on {payload['data']}, compressed by `leangen compress` (condense -> prune -> "
          f"distill on latents) to {budget}. Batch 1, interleaved medians of {tr['repeats']}; {metric}: the same "
          f"seeds and real images for every row. Machine check (10 GEMMs of 1024², lower = quieter): "
          f"{payload['gemm_ms_before']:.0f} ms before the pipeline, {payload['gemm_ms_after']:.0f} ms after.", "",
          md_table(["model", "params (M)", "GMACs", "eager 2t (ms)", "ORT 1t (ms)", "ORT 2t (ms)", "FPS ORT 2t",
                    metric], rows), "",
          f"Student {metric} / teacher {metric} = **{payload['metric_ratio']:.3f}**; MACs ratio "
          f"{payload['mac_ratio']:.1f}x, params ratio {payload['param_ratio']:.1f}x, ONNX Runtime latency ratio "
          f"(2 threads) **{payload['latency_ratio_ort']:.2f}x**, eager {payload['latency_ratio_eager']:.2f}x. "
          f"Widths {payload['student_channels']} (teacher {payload['teacher_channels']}).", "",
          f"Distillation evaluated every {tr['eval_every']} steps ({evals}); the student shipped is step "
          f"{payload['distill_best_step']}'s; stopped: {payload['distill_stopped']}. Training: teacher "
          f"{tr['teacher_steps']} steps (the preset's GAN recipe), condense {tr['condense_steps']} (sparsity "
          f"{tr['sparsity']}), distill at most {tr['distill_steps']}, on {tr['train_device']}; wall time of the "
          f"benchmark's last invocation {payload['wall_s'] / 60:.1f} min."]
    return "\n".join(md)


if __name__ == "__main__":
    main()
