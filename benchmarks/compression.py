"""Condense -> prune -> distill on the pix2pix/CycleGAN ResNet-9 generator at 256x256, CPU only: teacher vs student.

What runs (all in this process): (1) a short paired-GAN training of the ``resnet9-256`` teacher on
``openmoji-seg-256``; (2) ``leangen.compress.run_pipeline``: condensation (group lasso on the per-channel (γ, β) of
the InstanceNorms), structural pruning to a MACs budget (binary search) or, with ``--target-fps``, to a latency
measured on ONNX Runtime at 2 threads (``leangen.compress.width_search``: one width multiplier bisected on the
measured latency by default, the student's FPS measured again after export), distillation of the
pruned student from the condensed teacher; (3) teacher and student timed interleaved, batch 1, in eager PyTorch,
``torch.compile`` (inductor; null with the reason where it fails) and ONNX Runtime at 1 and 2 threads
(``leangen.compress.deploy``), and evaluated on the validation split; with CUDA, a PyTorch eager row on the device.

Honest scope: on 2 shared CPU cores a training step at 256 px takes seconds, so every training stage of the speed
part gets only tens of steps. Sizes and latencies are what a full-length run would give (they depend on the widths
only); its quality column (PSNR by default, ``--speed-metric``) is that of barely trained models. Quality is the
quality part's: ResNet-9 trained at 64² on the whole ``openmoji-seg-64``, FID between outputs and targets on the
439 validation pairs (``fid_pairs``). With ``--target-fps`` it compresses for the same target *at the speed part's
resolution* (``--target-resolution``: the candidates and the achieved figure are timed at 256², the same weights
rebuilt at that size; ResNet-9 is fully convolutional), so one run folder holds the student's FPS at 256² and its
FID at 64²; ``--quality-eval-every/--quality-target/--quality-patience`` stop distillation on the validation FID.

Usage::

    python benchmarks/compression.py                             # ~10 min on 2 cores
    python benchmarks/compression.py --teacher-steps 40 --condense-steps 20 --distill-steps 20 --ratio 12
    python benchmarks/compression.py --preset resnet-tiny32 --data openmoji-seg-32-n64 --teacher-steps 2 \
        --condense-steps 2 --distill-steps 2 --ratio 2 --min-channels 2 --repeats 1 \
        --workdir /tmp/leangen-compression-smoke --name compression-smoke      # a smoke test, ~1-2 min
    python benchmarks/compression.py --parts speed --target-fps 30        # latency budget: ResNet-9 256², ORT 2t
    python benchmarks/compression.py --parts speed --preset resnet-tiny32 --data openmoji-seg-32-n64 \
        --teacher-steps 1 --condense-steps 1 --distill-steps 1 --min-channels 2 --repeats 1 --target-fps 500 \
        --workdir /tmp/leangen-latency-smoke --results-dir /tmp/leangen-latency-smoke   # smoke test of that mode

The README's figures come from::

    python benchmarks/compression.py --parts speed --target-fps 30 --workdir W
    python benchmarks/compression.py --parts quality --target-fps 30 --quality-steps 3000 1000 20000 \
        --quality-eval-every 2500 --quality-target 1.1 --quality-patience 4 --distill-recon-weight 10 \
        --distill-lr 0.0005 --latency-margin 0.1 --workdir W

The same quality part at 256² wants a GPU for training (a ResNet-9 step at 256² takes seconds on 2 cores); the
latency target is still timed on the CPU runtime, and the results go to ``compression-256-cuda.json``::

    python benchmarks/compression.py --parts quality --device cuda --quality-preset resnet9-256 \
        --quality-data openmoji-seg-256 --target-fps 30 --quality-steps 3000 1000 20000 --quality-eval-every 2500 \
        --quality-target 1.1 --quality-patience 4 --distill-recon-weight 10 --distill-lr 0.0005 \
        --latency-margin 0.1 --name compression-256 --workdir W

Results: ``benchmarks/results/compression-cpu.json`` and ``.md`` (``--results-dir`` elsewhere); the pipeline's own
files under ``--workdir``.
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
from pixel_synthesis import machine_check  # noqa: E402


def out_res_gmacs(model: torch.nn.Module) -> float:
    """GMACs under GAN Compression's convention (transposed convs at output resolution): its 56.8 G for ResNet-9."""
    from leangen.profile import count_macs

    return count_macs(model, model.example_inputs(1), convention="output_resolution") / 1e9  # type: ignore[operator]


def train_teacher(preset: str, data: str, outdir: Path, steps: int, device: str, say: Any) -> Path:
    """Train the teacher for ``steps`` in ``outdir``, or resume the run already there; its run directory. Exits when
    the training was interrupted (Ctrl-C, SIGTERM): a half-trained teacher is never compressed."""
    from leangen.train import TrainOptions, train

    say(f"{preset}: training the teacher for {steps} steps on {data}")
    runs = sorted(outdir.glob("*")) if outdir.is_dir() else []
    result = train(TrainOptions(resume=str(runs[-1]), steps=steps, device=device, progress=False) if runs else
                   TrainOptions(preset=preset, data=data, outdir=str(outdir), steps=steps, device=device,
                                progress=False, metrics=[], snap=10**6, tick=10**6))
    if result.status != "done":
        sys.exit(f"teacher training {result.status} at step {result.step}; rerun the same command to resume")
    return result.run_dir


def run_part(preset: str, data: str, work: Path, steps: tuple[int, int, int], ratio: float, metric: str,
             args: argparse.Namespace, say: Any, target_fps: float | None = None, widths: list[int] | None = None,
             stopping: dict[str, Any] | None = None) -> tuple[dict[str, Any], Path]:
    """Train (or resume) the teacher, then ``run_pipeline`` to ``target_fps`` (measured on ``args.runtime`` at 2
    threads), to the given ``widths`` or else to the teacher's GMACs / ``ratio``; ``stopping``: the distillation's
    ``distill_eval_every``/``quality_target``/``patience``. Returns its report and the teacher's run."""
    import leangen
    from leangen.compress.deploy import size_report
    from leangen.compress.pipeline import CompressOptions, run_pipeline

    teacher_steps, condense_steps, distill_steps = steps
    teacher_run = train_teacher(preset, data, work / "teacher", teacher_steps, args.device, say)
    teacher_gmacs = size_report(leangen.load(teacher_run))["gmacs"]
    opts = CompressOptions(teacher=str(teacher_run), data=data, outdir=str(work / "compress"),
                           condense_steps=condense_steps, distill_steps=distill_steps,
                           sparsity=args.sparsity, sparsity_ramp=max(condense_steps // 2, 1),
                           macs_budget=None if target_fps or widths else teacher_gmacs / ratio,
                           target_fps=target_fps, widths=widths, width_search=args.width_search,
                           latency_margin=args.latency_margin if target_fps else 0.0, **(stopping or {}),
                           runtime=args.runtime, min_channels=args.min_channels,
                           threads=[1, 2], repeats=args.repeats, batch=1, compile=args.compile, metric=metric,
                           device=args.device, redo=args.redo,
                           hparams={"distill": {"gan_weight": args.distill_gan_weight,
                                                "feature_weight": args.distill_feature_weight,
                                                **({"recon_weight": args.distill_recon_weight}
                                                   if args.distill_recon_weight else {}),
                                                **({"lr": args.distill_lr} if args.distill_lr else {})}})
    return run_pipeline(opts, log=say), teacher_run


def _rounds(prune_step: dict[str, Any]) -> list[dict[str, Any]]:
    """The width search's rounds, without their tables (kept in the run folder's prune report)."""
    return [dict(widths=r["widths"], base_ms=r["latency_ms"], chosen=r["chosen"], predicted_ms=r["predicted_ms"],
                 measured_ms=r["measured_ms"], table_entries=sum(len(t) for t in r["table"]))
            for r in prune_step.get("latency_rounds", [])]


def row(r: dict[str, Any], model: torch.nn.Module, quality: str) -> dict[str, Any]:
    return dict(params=r["params"], gmacs=r["gmacs"], gmacs_out_res=out_res_gmacs(model),
                latency_ms_eager=r["latency_ms_eager_t2"], latency_ms_eager_1thread=r["latency_ms_eager_t1"],
                latency_ms_ort=r["latency_ms_ort_t2"], latency_ms_ort_1thread=r["latency_ms_ort_t1"],
                # null where torch.compile is unavailable (compile_status says why) or was not asked for
                latency_ms_compile=r.get("latency_ms_compile_t2"),
                latency_ms_compile_1thread=r.get("latency_ms_compile_t1"),
                compile_status=r.get("status_compile", "not measured"),
                fps_ort_2threads=r["fps_ort_t2"], fps_ort_1thread=r["fps_ort_t1"], onnx_max_abs_diff=r["onnx_max_abs_diff"],
                **{quality: r["value"]})


def _average_vs_raw(distill: dict[str, Any], data: str, metric: str) -> dict[str, Any] | None:
    """What the student's weight average is worth: the metric of the raw weights (``G``) of the last distillation
    snapshot beside the average's (the entry, evaluated by the pipeline) at that step, same pairs and protocol."""
    import leangen
    from leangen.compress.options import CompressOptions
    from leangen.compress.pipeline import evaluate

    evals = distill.get("evals") or []
    if not evals:
        return None
    last = max(evals, key=lambda e: e["step"])  # the run's newest snapshot: each evaluation follows its steps
    raw = evaluate(leangen.load(last["run"], role="G"), CompressOptions(teacher="", data=data, outdir="", metric=metric))
    return dict(step=last["step"], average=last["value"], raw_weights=raw)


def main() -> None:
    from leangen.compress.options import STEPS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", nargs="+", choices=["speed", "quality"], default=["speed", "quality"])
    p.add_argument("--preset", default="resnet9-256")
    p.add_argument("--data", default="openmoji-seg-256-n64")
    p.add_argument("--teacher-steps", type=int, default=20)
    p.add_argument("--condense-steps", type=int, default=10)
    p.add_argument("--distill-steps", type=int, default=10)
    p.add_argument("--quality-preset", default="resnet9-64")
    p.add_argument("--quality-data", default="openmoji-seg-64")
    p.add_argument("--quality-steps", type=int, nargs=3, default=[2000, 800, 800], metavar=("TEACHER", "CONDENSE",
                                                                                          "DISTILL"))
    p.add_argument("--quality-metric", default="fid_pairs")
    p.add_argument("--sparsity", type=float, default=1.0)
    p.add_argument("--ratio", type=float, default=30.0, help="MACs budget = teacher GMACs / ratio")
    p.add_argument("--target-fps", type=float, default=None,
                   help="latency budget instead: the speed part's student must run this many images/s on --runtime "
                        "at 2 threads (measured); the quality part prunes to the MACs ratio that student reached")
    p.add_argument("--runtime", choices=["onnxruntime", "torch", "cuda"], default="onnxruntime")
    p.add_argument("--width-search", choices=["uniform", "table", "threshold"], default="uniform",
                   help="with --target-fps: one width multiplier (default), per-group latency table + greedy, or "
                        "one global threshold")
    p.add_argument("--latency-margin", type=float, default=0.0,
                   help="the width search aims this fraction under the target (met is judged against the target)")
    p.add_argument("--speed-metric", default="psnr",
                   help="the speed part's metric on its validation split (fid_pairs for the 256² FID row)")
    p.add_argument("--quality-widths", choices=["search", "same", "ratio"], default="search",
                   help="with --target-fps, the quality part's widths: its own latency search, timed at the speed "
                        "part's resolution (search), the speed student's widths (same) or its MACs ratio")
    p.add_argument("--quality-eval-every", type=int, default=None,
                   help="evaluate the quality student every this many distillation steps, keep the best")
    p.add_argument("--quality-target", type=float, default=None, help="... and stop once within this ratio")
    p.add_argument("--quality-patience", type=int, default=None, help="... or after this many evaluations "
                   "without a new best")
    p.add_argument("--results-dir", type=Path, default=RESULTS, help="where the JSON and Markdown go")
    p.add_argument("--min-channels", type=int, default=8)
    p.add_argument("--distill-gan-weight", type=float, default=1.0)
    p.add_argument("--distill-feature-weight", type=float, default=1.0)
    p.add_argument("--distill-recon-weight", type=float, default=0.0,
                   help="L1 between the student and the real image (the distill objective's recon_weight)")
    p.add_argument("--distill-lr", type=float, default=None, help="the distillation's Adam lr (default: the preset's)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--redo", choices=list(STEPS[1:]), default=None,
                   help="redo the compression from this step in the existing run folder (leangen compress --redo): "
                        "the teacher and the earlier steps are reused")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                   help="time torch.compile too (compiles teacher and student once per thread count)")
    p.add_argument("--device", default="cpu",
                   help="where teacher, condense and distill train (cuda: a 256² quality run a CPU cannot afford); "
                        "the latency targets are still timed on the CPU runtime, the CUDA row on the device")
    p.add_argument("--workdir", default="/tmp/leangen-compression-bench")
    p.add_argument("--name", default="compression")
    args = p.parse_args()

    import leangen
    from leangen.presets import get_preset

    torch.set_num_threads(2)
    t0 = time.time()
    say = lambda m: print(f"[{time.time() - t0:6.0f}s] {m}", file=sys.stderr, flush=True)  # noqa: E731
    work = Path(args.workdir)
    # the file says where training ran: a CUDA-trained run's FIDs are not this CPU's (its latencies still are)
    tag = "cuda" if str(args.device).startswith("cuda") else "cpu"
    jpath = args.results_dir / f"{args.name}-{tag}.json"
    payload: dict[str, Any] = json.loads(jpath.read_text()) if jpath.is_file() and set(args.parts) != {
        "speed", "quality"} else {}
    payload.update(benchmark=args.name, environment=environment(torch.device(args.device)), cpu_count=os.cpu_count())
    common = dict(ratio=args.ratio, target_fps=args.target_fps, runtime=args.runtime, min_channels=args.min_channels,
                  sparsity=args.sparsity, batch=1, repeats=args.repeats,
                  distill_gan_weight=args.distill_gan_weight, distill_feature_weight=args.distill_feature_weight,
                  distill_recon_weight=args.distill_recon_weight, distill_lr=args.distill_lr,
                  width_search=args.width_search, latency_margin=args.latency_margin, train_device=args.device,
                  redo=args.redo)
    if "speed" in args.parts:
        gemm_before = machine_check(torch.device("cpu"))
        metric = args.speed_metric
        doc, teacher_run = run_part(args.preset, args.data, work / "speed",
                                    (args.teacher_steps, args.condense_steps, args.distill_steps), args.ratio, metric,
                                    args, say, args.target_fps)
        gemm_after = machine_check(torch.device("cpu"))
        teacher, student = leangen.load(teacher_run), leangen.load(work / "speed" / "compress" / "student")
        quality = "fid" if metric.startswith("fid") else metric
        t, s = row(doc["teacher"], teacher, quality), row(doc["student"], student, quality)
        if torch.cuda.is_available():  # the GPU row: PyTorch eager on the device, interleaved, batch 1
            from leangen.compress.latency import measure_cuda

            cuda = measure_cuda({"teacher": teacher, "student": student}, args.repeats)
            t["latency_ms_cuda"], s["latency_ms_cuda"] = cuda["teacher"], cuda["student"]
            payload["cuda_device"] = torch.cuda.get_device_name()
        prune_step = doc["steps"]["prune"]
        payload.update(
            speed_metric=f"{metric} on the validation split of {args.data}", resolution=teacher.config["resolution"],
            width_search=_rounds(prune_step), latency_probes=len(prune_step.get("latency_search", [])) or None,
            multiplier_probes=prune_step.get("latency_probes"))
        payload.update(
            preset=args.preset, data=args.data, teacher=t, student=s, mac_ratio=t["gmacs"] / s["gmacs"],
            param_ratio=t["params"] / s["params"], latency_ratio_eager=t["latency_ms_eager"] / s["latency_ms_eager"],
            latency_ratio_ort=t["latency_ms_ort"] / s["latency_ms_ort"],
            latency_ratio_compile=(t["latency_ms_compile"] / s["latency_ms_compile"]
                                   if t["latency_ms_compile"] and s["latency_ms_compile"] else None),
            latency_target=doc.get("latency_target"),  # measured after export; None with a MACs budget
            student_channels=doc["steps"]["prune"]["channels_after"],
            teacher_channels=doc["steps"]["prune"]["channels_before"],
            training=dict(common, teacher_steps=args.teacher_steps, condense_steps=args.condense_steps,
                          distill_steps=args.distill_steps),
            gemm_ms_before=gemm_before, gemm_ms_after=gemm_after, speed_wall_s=time.time() - t0)
    if "quality" in args.parts:
        t1 = time.time()
        ratio = payload["mac_ratio"] if args.target_fps and "mac_ratio" in payload else args.ratio
        # ResNet-9's widths do not depend on the resolution: the 256² student's widths at 64² are the same network
        stopping: dict[str, Any] = dict(distill_eval_every=args.quality_eval_every,
                                        quality_target=args.quality_target, patience=args.quality_patience)
        widths = payload["student_channels"] if (args.target_fps and args.quality_widths == "same" and
                                                 "student_channels" in payload) else None
        # search: the 64² teacher's own condensed scores, its candidates timed at the speed part's size (ResNet-9 is
        # fully convolutional: the same weights run at 256²), the achieved FPS measured there after distillation
        search = bool(args.target_fps and args.quality_widths == "search")
        if search:
            stopping.update(target_resolution=payload.get("resolution", 256))
        doc, teacher_run = run_part(args.quality_preset, args.quality_data, work / "quality", tuple(args.quality_steps),
                                    ratio, args.quality_metric, args, say, target_fps=args.target_fps if search else None,
                                    widths=widths, stopping=stopping)
        metric = args.quality_metric
        steps = doc["steps"]
        distill_recipe = get_preset(f"{args.quality_preset}-distill").training
        payload["quality"] = dict(
            preset=args.quality_preset, data=args.quality_data, metric=f"{metric} on the validation split",
            teacher={k: doc["teacher"][k] for k in ("params", "gmacs")} | {"fid": doc["teacher"]["value"]},
            after_condense=steps["condense"]["value"], after_prune=steps["prune"]["value"],
            student={k: doc["student"][k] for k in ("params", "gmacs")} | {"fid": doc["student"]["value"]},
            fid_ratio=doc["student"]["value"] / doc["teacher"]["value"],
            mac_ratio=doc["teacher"]["gmacs"] / doc["student"]["gmacs"],
            student_channels=steps["prune"]["channels_after"],
            pruned_to=("a latency search timed at the speed part's size" if search else
                       "the speed student's widths" if widths else f"teacher GMACs / {ratio:.3g}"),
            latency_target=doc.get("latency_target"),
            width_search=_rounds(steps["prune"]), multiplier_probes=steps["prune"].get("latency_probes"),
            distill_evals=[dict(step=e["step"], fid=e["value"]) for e in steps["distill"].get("evals", [])],
            weights_average=_average_vs_raw(steps["distill"], args.quality_data, metric),
            distill_best_step=steps["distill"].get("best_step"), distill_stopped=steps["distill"].get("stopped"),
            training=dict(common, ratio=ratio, **stopping, teacher_steps=args.quality_steps[0],
                          distill_ema_kimg=distill_recipe.get("ema_kimg"),
                          distill_ema_rampup=distill_recipe.get("ema_rampup"),
                          condense_steps=args.quality_steps[1],
                          distill_steps=args.quality_steps[2]),
            wall_s=time.time() - t1)
    if "teacher" in payload and "fid" not in payload["teacher"]:  # the 256² rows carry no FID of their own
        q = payload.get("quality") or {}
        payload["teacher"]["fid"] = payload["student"]["fid"] = None
        payload["fid_note"] = (f"fid: see quality (the same pipeline on {q.get('preset')} at {q.get('data')}); the "
                               f"256² models are trained for tens of steps only" if q else "fid: not measured")
    if args.results_dir == RESULTS:
        j, m = write_results(args.name, tag, payload, render(payload))
    else:
        args.results_dir.mkdir(parents=True, exist_ok=True)
        j, m = jpath, args.results_dir / f"{args.name}-{tag}.md"
        j.write_text(json.dumps(payload, indent=2) + "\n")
        m.write_text(render(payload).rstrip() + "\n")
    say(f"wrote {j} and {m}")


def _target_line(t: dict[str, Any] | None) -> list[str]:
    """The latency-budget line (nothing with a MACs budget)."""
    if not t:
        return []
    got = f"{t['student_fps']:.1f} FPS ({t['student_ms']:.1f} ms)" if t.get("student_ms") else "not measured"
    size = f" at {t['resolution']}x{t['resolution']}" if t.get("resolution") else ""
    where = f"{t['runtime']} at {t['threads']} threads{size}" if t.get("threads") else f"{t['runtime']}{size}"
    inter = t.get("student_ms_interleaved")
    return [f"Latency budget: {t['target_fps']:.1f} FPS on {where}; the student, exported and timed alone after "
            f"distillation: **{got}**, {'met' if t['met'] else 'NOT met'} (teacher {fmt(t.get('teacher_fps'), '.1f')} "
            f"FPS, timed the same way)" + (f"; interleaved with the teacher in the table above: {inter:.1f} ms"
                                           if inter else "") + ".", ""]


def _search_lines(payload: dict[str, Any], margin: float | None = None) -> list[str]:
    """How the widths were found: the table rounds (predicted vs measured) or the threshold probes."""
    aim = f", aiming {margin:.0%} under the target (headroom for a slower phase)" if margin else ""
    rounds = payload.get("width_search") or []
    probes = payload.get("multiplier_probes") or []
    if probes:
        steps = "; ".join(f"{p['fraction']:.3f}: {p['measured_ms']:.1f} ms" for p in probes)
        return [f"Width search: one width multiplier for every group, bisection on the measured latency{aim}, a "
                f"multiplier passing when every burst meets the budget (slowest burst per multiplier: {steps}).",
                ""]
    if rounds:
        steps = "; ".join(f"round {i + 1}: {r['table_entries']} table entries around {r['base_ms']:.1f} ms, chose "
                          f"{r['chosen']} predicted {r['predicted_ms']:.1f} ms, measured {r['measured_ms']:.1f} ms"
                          for i, r in enumerate(rounds))
        return [f"Width search (per-group latency table on the target runtime, greedy by importance per ms): {steps}.",
                ""]
    if payload.get("latency_probes"):
        return [f"Width search: one global score threshold, {payload['latency_probes']} candidates timed.", ""]
    return []


def render(payload: dict[str, Any]) -> str:
    md = [f"# Compression benchmark on CPU ({payload['environment']['device_name']}, torch {torch.__version__})", ""]
    if "teacher" in payload:
        t, s = payload["teacher"], payload["student"]
        headers = ["model", "params (M)", "GMACs exec.", "GMACs out-res", "eager 1t (ms)", "eager 2t (ms)",
                   "compile 1t (ms)", "compile 2t (ms)", "ORT 1t (ms)", "ORT 2t (ms)", "FPS ORT 2t"]
        rows = [[name, fmt(r["params"] / 1e6, ".3f"), fmt(r["gmacs"], ".2f"), fmt(r["gmacs_out_res"], ".2f"),
                 fmt(r["latency_ms_eager_1thread"], ".1f"), fmt(r["latency_ms_eager"], ".1f"),
                 fmt(r.get("latency_ms_compile_1thread"), ".1f") or "n/a", fmt(r.get("latency_ms_compile"), ".1f") or "n/a",
                 fmt(r["latency_ms_ort_1thread"], ".1f"), fmt(r["latency_ms_ort"], ".1f"),
                 fmt(r["fps_ort_2threads"], ".1f")] for name, r in (("teacher (ResNet-9)", t), ("student", s))]
        extra = [(k, h) for k, h in (("latency_ms_cuda", f"CUDA eager (ms) [{payload.get('cuda_device')}]"),
                                     ("fid", "FID"), ("psnr", "PSNR")) if t.get(k) is not None]
        headers += [h for _, h in extra]
        for r, model in zip(rows, (t, s)):
            r += [fmt(model[k], ".2f") for k, _ in extra]
        tr = payload["training"]
        md += [f"## Speed: {payload['preset']} ({payload['data']})", "",
               f"Batch 1, interleaved medians of {tr.get('repeats', 5)}; machine check (10 GEMMs of 1024², lower = "
               f"quieter): {payload['gemm_ms_before']:.0f} ms before, {payload['gemm_ms_after']:.0f} ms after.", "",
               md_table(headers, rows), "",
               f"MACs ratio **{payload['mac_ratio']:.1f}x**, params ratio {payload['param_ratio']:.1f}x, eager latency "
               f"ratio (2 threads) **{payload['latency_ratio_eager']:.1f}x**, ONNX Runtime latency ratio "
               f"{payload['latency_ratio_ort']:.1f}x, torch.compile: {s.get('compile_status', 'not measured')}.", "",
               *_target_line(payload.get("latency_target")), *_search_lines(payload),
               f"Student widths {payload['student_channels']} (teacher {payload['teacher_channels']}). Training: "
               f"teacher {tr['teacher_steps']} steps, condense {tr['condense_steps']}, distill {tr['distill_steps']} "
               f"(sizes and latencies depend on the widths only).", ""]
    q = payload.get("quality")
    if q:
        tr = q["training"]
        md += [f"## Quality: {q['preset']} on {q['data']} ({q['metric']})", "",
               md_table(["model", "params (M)", "GMACs", "FID"],
                        [["teacher", fmt(q["teacher"]["params"] / 1e6, ".3f"), fmt(q["teacher"]["gmacs"], ".3f"),
                          fmt(q["teacher"]["fid"], ".2f")],
                         ["after condense", "", "", fmt(q["after_condense"], ".2f")],
                         ["after prune (before distill)", "", "", fmt(q["after_prune"], ".2f")],
                         ["student", fmt(q["student"]["params"] / 1e6, ".3f"), fmt(q["student"]["gmacs"], ".3f"),
                          fmt(q["student"]["fid"], ".2f")]]), "",
               f"Student FID / teacher FID = **{q['fid_ratio']:.3f}**, MACs ratio {q['mac_ratio']:.1f}x, pruned to "
               f"{q.get('pruned_to', 'a MACs budget')} {q['student_channels']}. "
               + (f"Distillation evaluated every {tr['distill_eval_every']} steps ("
                  + ", ".join(f"{e['step']}: {e['fid']:.2f}" for e in q["distill_evals"])
                  + f"); the student shipped is step {q['distill_best_step']}'s; stopped: {q['distill_stopped']}. "
                  if q.get("distill_evals") else "")
               + f"Training: "
               f"teacher {tr['teacher_steps']} steps, condense {tr['condense_steps']}, distill {tr['distill_steps']}, "
               f"batch 1 on {tr.get('train_device', 'cpu')}; distillation L1 to the teacher + features "
               f"(weight {tr['distill_feature_weight']}) + "
               f"adversarial (weight {tr['distill_gan_weight']})"
               + (f" + L1 to the real image (weight {tr['distill_recon_weight']})" if tr.get("distill_recon_weight")
                  else "") + (f", lr {tr['distill_lr']}" if tr.get("distill_lr") else "")
               + (f", student weights averaged (EMA half-life {tr['distill_ema_kimg']} kimg"
                  + (f", at most {tr['distill_ema_rampup']} × the images seen" if tr.get("distill_ema_rampup") else "")
                  + ")" if tr.get("distill_ema_kimg") else "")
               + (f"; at step {wa['step']} the average scores {wa['average']:.2f}, the raw weights "
                  f"{wa['raw_weights']:.2f}" if (wa := q.get("weights_average")) else "")
               + f". Wall time of the benchmark's last invocation {q['wall_s'] / 60:.1f} min (a "
               f"resumed run counts only that one; the training logs in the run folder have the rest).", "",
               *_target_line(q.get("latency_target")), *_search_lines(q, tr.get("latency_margin"))]
    return "\n".join(md)


if __name__ == "__main__":
    main()
