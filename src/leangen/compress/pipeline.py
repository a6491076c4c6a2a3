"""``leangen compress``: condense -> prune -> distill -> deploy, each step resumable and reported.

Layout of ``outdir``::

    condense/runs/...        training run (objective ``condense``; ``condense_distill`` for a generator), resumable
    condense/model/          the condensed generator (the frozen teacher of step 3), channels.png (histogram)
    prune/model/             the pruned generator: same type, smaller ``channels`` in its config.json
    distill/runs/...         training run (objective ``distill``: pruned student, condensed teacher)
    distill/evals.json       with --distill-eval-every: the teacher's metric and the student's after each round
    distill/best/            ... and the best student so far (``leangen.compress.stopping``)
    student/                 the final compressed generator (``leangen.load`` it)
    <step>/report.json       params, GMACs, eager latency, the metric on the validation split
    report.json, report.md   teacher vs student: sizes, eager / torch.compile / ONNX Runtime latency per thread
                             count (compile: null with the reason where unavailable), metric

A step whose ``report.json`` exists is skipped on a rerun; an interrupted or killed training step resumes from its
run's newest snapshot (written through ``leangen.runs`` about every tenth of the step). Ctrl-C stops the whole
pipeline after that snapshot (``CompressInterrupted``), never just the step. Options are checked before any work
(``leangen.compress.checks``), and ``compress.json`` ties the folder to them: a rerun with other options is refused
unless ``overwrite`` is set, which starts afresh.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from leangen.compress.options import CompressOptions

class CompressInterrupted(RuntimeError):
    """Ctrl-C (SIGINT/SIGTERM) stopped a step; what was done is kept and a rerun of the same command resumes."""


def evaluate(model: nn.Module, opts: CompressOptions) -> float:
    """``opts.metric`` of ``model`` on the validation split of ``opts.data``."""
    from leangen.metrics import calc_metric
    from leangen.tasks import open_eval_data

    from leangen.compress.checks import eval_split

    val = open_eval_data(opts.data, model, split=eval_split(model))
    rec = calc_metric(opts.metric, model, val, progress=False, device="cpu")
    return float(next(iter(rec["results"].values())))


def model_report(model: nn.Module, opts: CompressOptions, **extra: Any) -> dict[str, Any]:
    """Params, GMACs, eager latency at each thread count and the metric of one model."""
    from leangen.compress.deploy import measure_latency, size_report

    model = model.cpu().eval()
    lat = measure_latency({"m": model}, opts.threads, repeats=opts.repeats)["m"]
    return {**size_report(model), **lat, "metric": opts.metric, "value": evaluate(model, opts), **extra}


def _write(path: Path, doc: dict[str, Any]) -> dict[str, Any]:
    """A step's ``report.json``, atomically: it marks the step done, so it must never exist half written."""
    from leangen.utils.files import write_json_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, doc)
    return doc


def _train(stage: Path, preset: str, opts: CompressOptions, steps: int, hparams: dict[str, Any],
           overrides: dict[str, dict[str, Any]]) -> Path:
    """Run (or resume) one training step of the pipeline; returns its run directory. ``CompressInterrupted`` when
    Ctrl-C stopped it (after its snapshot)."""
    from leangen import runs
    from leangen.train import TrainOptions, train
    from leangen.train.options import resolve_options

    runs_dir = stage / "runs"
    existing = runs.latest_run(runs_dir)  # a run killed before its first snapshot has none: it is started anew
    if existing is not None:
        result = train(TrainOptions(resume=str(existing), steps=steps, device=opts.device, progress=False))
    else:
        # A snapshot about every tenth of the step (one tick each), so a killed step loses little.
        resolved = resolve_options(TrainOptions(preset=preset, data=opts.data, batch=opts.batch))
        batch = int(resolved.batch)  # type: ignore[arg-type]
        result = train(TrainOptions(preset=preset, data=opts.data, outdir=str(runs_dir), steps=steps,
                                    batch=opts.batch, device=opts.device, progress=False, metrics=[], keep=2,
                                    snap=1, tick=max(1, steps // 10) * batch / 1000, hparams=hparams,
                                    overrides=overrides))
    if result.status != "done":
        raise CompressInterrupted(f"{stage.name} stopped at step {result.step} of {steps}; its snapshot is in "
                                  f"{result.run_dir}. Rerun the same command to resume")
    return result.run_dir


def run_pipeline(opts: CompressOptions, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every step not yet done; returns the final report (also ``outdir/report.json``). ``ValueError`` (one
    line) for options that cannot work, before any training; ``CompressInterrupted`` after Ctrl-C."""
    import leangen
    from leangen.compress.checks import check_options, claim_outdir
    from leangen.compress.histogram import histogram
    from leangen.ops.group_lasso import channel_scores
    from leangen.compress.deploy import measure_latency, size_report
    from leangen.compress.prune import prune
    from leangen.compress.latency import achieved, target_ms
    from leangen.presets.translators import with_affine_norms

    out = Path(opts.outdir)
    teacher, base = check_options(opts)
    claim_outdir(opts)
    generator = teacher.kind == "generator"  # type: ignore[attr-defined]
    # a translator's stages train a D conditioned on its classes; a generator's stages learn from the teacher alone
    d_over = {} if generator else {"D": {"num_classes": int(teacher.num_classes)}}  # type: ignore[attr-defined]
    teacher_path = str(Path(opts.teacher).resolve())

    # 1. Condense: sparsity training of a copy with affine norms (or gates), started from the teacher's weights.
    if not (out / "condense" / "report.json").is_file():
        log(f"condense: {opts.condense_steps} steps of {base}-condense")
        run = _train(out / "condense", f"{base}-condense", opts, opts.condense_steps,
                     {"init": teacher_path, "sparsity": opts.sparsity, "sparsity_ramp": opts.sparsity_ramp,
                      **({"teacher": teacher_path} if generator else {}), **opts.hparams.get("condense", {})},
                     {"G": with_affine_norms(teacher.model_type, teacher.config),  # type: ignore[attr-defined]
                      **d_over})
        condensed = leangen.load(run)
        condensed.save_pretrained(out / "condense" / "model")
        scores = channel_scores(condensed)
        histogram(scores, out / "condense" / "channels.png", opts.threshold, "after condensation")
        values = torch.cat(scores)
        _write(out / "condense" / "report.json", model_report(
            condensed, opts, run=str(run), channels=int(values.numel()),
            channels_at_or_below_threshold=int((values <= opts.threshold).sum())))
    condensed = leangen.load(out / "condense" / "model")

    # 2. Prune: structural, by threshold, to a MACs budget or to a latency measured on the target runtime.
    if not (out / "prune" / "report.json").is_file():
        budget = opts.macs_budget * 1e9 if opts.macs_budget else None
        threshold, search, widths = opts.threshold, {}, opts.widths
        if target_ms(opts) is not None:
            found, widths, search = _latency_search(condensed, opts, log)
            threshold = opts.threshold if found is None else found
        pruned, info = prune(condensed, threshold=None if budget else threshold, macs_budget=budget,
                             min_channels=opts.min_channels, widths=widths)
        info.update(search)
        log(f"prune: channels {info['channels_before']} -> {info['channels_after']}")
        kept = info.pop("kept")
        pruned.save_pretrained(out / "prune" / "model", extra={"kept_channels": kept})  # for feature distillation
        _write(out / "prune" / "report.json", model_report(pruned, opts, **info))
    pruned = leangen.load(out / "prune" / "model")

    # 3. Distill: the pruned student from the frozen condensed teacher.
    if not (out / "distill" / "report.json").is_file():
        log(f"distill: {opts.distill_steps} steps of {base}-distill")
        train_step = functools.partial(_train, out / "distill", f"{base}-distill", opts, hparams={
            "teacher": str((out / "condense" / "model").resolve()), "init": str((out / "prune" / "model").resolve()),
            **opts.hparams.get("distill", {})}, overrides={"G": dict(pruned.config), **d_over})
        if opts.distill_eval_every:
            run, student, stopping = _distill_with_validation(train_step, teacher, opts, log)
        else:
            run, stopping = train_step(steps=opts.distill_steps), {}
            student = leangen.load(run)
        student.save_pretrained(out / "student")
        _write(out / "distill" / "report.json", model_report(student, opts, run=str(run), **stopping))
    student = leangen.load(out / "student")

    # 4. Deploy: teacher vs student, interleaved, eager, torch.compile and ONNX Runtime.
    if not (out / "report.json").is_file():
        log("deploy: latency of teacher and student")
        models = {"teacher": teacher.cpu().eval(), "student": student.cpu().eval()}
        # A target on ONNX Runtime is checked on the exported student, whatever --onnx says.
        onnx = opts.onnx or (target_ms(opts) is not None and opts.runtime == "onnxruntime")
        lat = measure_latency(models, opts.threads, repeats=opts.repeats, compile=opts.compile,
                              compile_backend=opts.compile_backend, onnx_dir=out / "onnx" if onnx else None,
                              log=None)
        rows = {name: {**size_report(m), **lat[name], "metric": opts.metric, "value": evaluate(m, opts)}
                for name, m in models.items()}
        steps = {s: json.loads((out / s / "report.json").read_text()) for s in ("condense", "prune", "distill")}
        t, s = rows["teacher"], rows["student"]
        n = max(opts.threads)
        doc = dict(teacher=t, student=s, steps=steps, mac_ratio=t["gmacs"] / s["gmacs"],
                   param_ratio=t["params"] / s["params"],
                   latency_ratio_eager=t[f"latency_ms_eager_t{n}"] / s[f"latency_ms_eager_t{n}"],
                   threads=list(opts.threads), metric=opts.metric, teacher_path=str(opts.teacher), preset=base)
        if target_ms(opts) is not None:
            # measured after export (at the target's size and runtime), not the search's prediction
            doc["latency_target"] = achieved(opts, models, rows)
        _write(out / "report.json", doc)
        (out / "report.md").write_text(render_report(doc) + "\n")
    return json.loads((out / "report.json").read_text())


def _distill_with_validation(train_step: Callable[..., Path], teacher: nn.Module, opts: CompressOptions,
                             log: Callable[[str], None]) -> tuple[Path, nn.Module, dict[str, Any]]:
    """Distill in rounds of ``opts.distill_eval_every`` steps, evaluating the student after each on the validation
    split; returns the run, the best student and what the report records. Resumable: the evaluations are kept in
    ``distill/evals.json`` and the best student in ``distill/best``."""
    import leangen
    from leangen.compress.stopping import StopRule
    from leangen.metrics import metric_info
    from leangen.utils.files import write_json_atomic

    stage = Path(opts.outdir) / "distill"
    record = stage / "evals.json"
    doc = json.loads(record.read_text()) if record.is_file() else {}
    if "teacher" not in doc:  # the teacher as the report measures it: same metric, split and protocol
        doc = {"teacher": evaluate(teacher, opts), "evals": []}
        write_json_atomic(record, doc)
    rule = StopRule(opts.quality_target, opts.patience, metric_info(opts.metric).higher_is_better)
    evals: list[dict[str, Any]] = doc["evals"]
    reason = rule.reason_to_stop([e["value"] for e in evals], doc["teacher"])
    step = evals[-1]["step"] if evals else 0
    while reason is None and step < opts.distill_steps:
        step = min(step + opts.distill_eval_every, opts.distill_steps)
        run = train_step(steps=step)
        student = leangen.load(run)
        value = evaluate(student, opts)
        values = [e["value"] for e in evals] + [value]
        if rule.best(values) == len(values) - 1:
            student.save_pretrained(stage / "best")  # before the record that says so: a crash between is harmless
        evals.append({"step": step, "value": value, "gap": rule.gap(value, doc["teacher"]), "run": str(run)})
        write_json_atomic(record, doc)
        log(f"distill: step {step}: {opts.metric} {value:.4g} (teacher {doc['teacher']:.4g})")
        reason = rule.reason_to_stop(values, doc["teacher"])
    best = evals[rule.best([e["value"] for e in evals])]
    return Path(best["run"]), leangen.load(stage / "best"), {
        "teacher_value": doc["teacher"], "evals": evals, "best_step": best["step"],
        "stopped": reason or f"--distill-steps {opts.distill_steps} reached"}


def _latency_search(condensed: nn.Module, opts: CompressOptions,
                    log: Callable[[str], None]) -> tuple[float | None, list[int] | None, dict[str, Any]]:
    """What meets the latency target, measured on its runtime: widths from the per-group latency table
    (``--width-search table``, ``leangen.compress.width_search``), one width multiplier (``uniform``) or one global
    threshold (``threshold``); returns ``(threshold, widths, what the prune report keeps)``, one of the first two
    None."""
    from leangen.compress.latency import (choose_threshold, describe, measure_many_ms, measure_ms, target_ms,
                                          target_threads)
    from leangen.compress.width_search import search_widths, uniform_widths

    target = target_ms(opts)
    assert target is not None
    # the search aims under the target by the margin; the achieved figure is still judged against the target
    budget = target * (1.0 - float(opts.latency_margin))
    n, res = target_threads(opts), opts.target_resolution
    report: dict[str, Any] = dict(target_ms=target, search_ms=budget, latency_margin=float(opts.latency_margin),
                                  runtime=opts.runtime, target_threads=n, target_resolution=res)
    log(f"prune: {opts.width_search} search for {describe(opts)} ({budget:.3f} ms"
        + (f" = {target:.3f} ms less a {opts.latency_margin:.0%} margin)" if opts.latency_margin else ")"))
    try:  # measured now, on a machine busier than at the check: still one line, no training
        many = functools.partial(measure_many_ms, runtime=opts.runtime, threads=n, repeats=opts.repeats, warmup=1,
                                 resolution=res)
        if opts.width_search == "table":
            widths, rounds = search_widths(condensed, budget, many, opts.threshold, opts.min_channels, log=log)
            return None, widths, dict(report, width_search="table", latency_rounds=rounds)
        if opts.width_search == "uniform":
            widths, probes = uniform_widths(condensed, budget, many, opts.threshold, opts.min_channels, log=log)
            return None, widths, dict(report, width_search="uniform", latency_probes=probes)
        threshold, table = choose_threshold(
            condensed, budget, lambda m: measure_ms(m, opts.runtime, n, opts.repeats, resolution=res),
            opts.min_channels, log)
        return threshold, None, dict(report, latency_search=table)
    except ValueError as e:
        aim = f" ({target:.3f} ms less the {opts.latency_margin:.0%} --latency-margin)" if opts.latency_margin else ""
        raise ValueError(f"{describe(opts)} cannot be met: {e}{aim}") from None


def render_report(doc: dict[str, Any]) -> str:
    """The final report as a Markdown table (teacher, each step, student)."""
    threads = doc["threads"]
    cols = ["model", "params (M)", "GMACs"] + [f"{rt} {n}t (ms)" for rt in ("eager", "compile", "ORT")
                                               for n in threads] + [doc["metric"]]
    rows = [("teacher", doc["teacher"]), *((f"after {k}", v) for k, v in doc["steps"].items()),
            ("student", doc["student"])]

    def cell(r: dict[str, Any], key: str, spec: str = ".1f") -> str:
        return "" if r.get(key) is None else format(r[key], spec)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for name, r in rows:
        cells = [name, format(r["params"] / 1e6, ".3f"), format(r["gmacs"], ".3f")]
        cells += [cell(r, f"latency_ms_{tag}_t{n}") for tag in ("eager", "compile", "ort") for n in threads]
        cells.append(cell(r, "value", ".2f"))
        lines.append("| " + " | ".join(cells) + " |")
    status = doc["student"].get("status_compile")
    if status and status != "ok":  # say why the compile columns of the final models are empty
        lines.append(f"\ntorch.compile: {status}.")
    lines.append(f"\nMACs ratio {doc['mac_ratio']:.2f}x, params ratio {doc['param_ratio']:.2f}x, eager latency "
                 f"ratio ({max(threads)} threads) {doc['latency_ratio_eager']:.2f}x; metric: {doc['metric']} on the "
                 f"validation split.")
    t = doc.get("latency_target")
    if t:
        got = f"{t['student_fps']:.1f} FPS ({t['student_ms']:.2f} ms)" if t["student_ms"] else "not measured"
        where = f"{t['runtime']} at {t['threads']} thread(s)" if t["threads"] else t["runtime"]
        where += f", {t['resolution']}x{t['resolution']}" if t.get("resolution") else ""
        lines.append(f"Latency target {t['target_fps']:.1f} FPS ({t['target_ms']:.2f} ms) on {where}: student "
                     f"measured after export {got}, {'met' if t['met'] else 'NOT met'}.")
    return "\n".join(lines)
