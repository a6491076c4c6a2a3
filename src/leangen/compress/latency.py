"""A latency budget for ``leangen compress``: the widths whose pruned model meets a target latency *measured* on the
target runtime (ONNX Runtime or PyTorch eager on the CPU), at batch 1, the model's own resolution and one thread
count, instead of a MACs budget (MACs miss what dominates small CPU models: memory traffic at full resolution).

Search (ours): the candidates are the pruning thresholds of ``leangen.compress.prune`` (the sorted channel scores,
so the least important channels go first, as with ``--gmacs``). A candidate's latency is measured by building its
pruned model and timing it through ``leangen.profile.runtimes.measure_runtimes`` (the ONNX file exported and checked
as for ``leangen profile``). Binary search finds the smallest threshold (the widest model) whose measured latency
meets the target; every probe is kept in a table (threshold, widths, GMACs, measured ms) for the report. Timing is
noisy, so the search's figure is never the one reported as achieved: the distilled student is exported and timed
again at deploy (``achieved``).
"""
from __future__ import annotations

import math
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

if TYPE_CHECKING:
    from leangen.compress.options import CompressOptions

#: Runtimes a latency target can name (``--runtime``): ONNX Runtime and PyTorch eager on the CPU at N threads, and
#: PyTorch eager on the current CUDA device (the thread count does not apply there).
TARGET_RUNTIMES = ("onnxruntime", "torch", "cuda")


#: The achieved figure: bursts of timed runs, this many seconds apart (on a 2-core shared VM, ONNX Runtime latencies
#: of one model alternate between about 27 and 41 ms in phases of seconds; one burst lands in one phase).
BURSTS, BURST_PAUSE_S = 3, 2.0


class LatencyUnreachable(ValueError):
    """Even the narrowest model (``min_channels`` per width) is slower than the target; ``best_ms`` is its time."""

    def __init__(self, message: str, best_ms: float):
        super().__init__(message)
        self.best_ms = best_ms


def target_ms(opts: "CompressOptions") -> float | None:
    """The latency target in ms per image (``target_ms``, or 1000 / ``target_fps``); None without one."""
    if opts.target_ms is not None:
        return float(opts.target_ms)
    return 1000.0 / float(opts.target_fps) if opts.target_fps is not None else None


def target_threads(opts: "CompressOptions") -> int:
    """The thread count the target applies at: the largest of ``opts.threads`` (the one the report's ratios use)."""
    return max(opts.threads)


def describe(opts: "CompressOptions") -> str:
    """``--target-fps 30 on onnxruntime at 2 thread(s)``: how errors and logs name the target."""
    given = f"--target-fps {opts.target_fps:g}" if opts.target_fps is not None else f"--target-ms {opts.target_ms:g}"
    if opts.target_resolution:
        given += f" at {opts.target_resolution}x{opts.target_resolution}"
    if opts.runtime == "cuda":
        return f"{given} on cuda ({torch.cuda.get_device_name() if torch.cuda.is_available() else 'no device'})"
    return f"{given} on {opts.runtime} at {target_threads(opts)} thread(s)"


def at_resolution(model: nn.Module, resolution: int | None) -> nn.Module:
    """``model`` rebuilt at ``resolution`` with the same weights (a fully convolutional translator deploys at any
    size its downsampling divides); ``model`` itself when ``resolution`` is None or its own. ``ValueError`` (one line)
    when the model cannot be built or loaded at that size."""
    from leangen.models.base import MODEL_TYPES

    config = dict(model.config)  # type: ignore[attr-defined]
    if resolution is None or config.get("resolution") == resolution:
        return model
    if "resolution" not in config:
        raise ValueError(f"{type(model).__name__} has no resolution to change; time it at its own size")
    try:
        other = MODEL_TYPES[model.model_type](**dict(config, resolution=int(resolution)))  # type: ignore[attr-defined]
        other.load_state_dict(model.state_dict(), strict=True)
    except (ValueError, RuntimeError) as e:
        raise ValueError(f"cannot run {type(model).__name__} at {resolution}x{resolution}: "
                         f"{str(e).splitlines()[0]}") from None
    return other.eval()


def measure_many_ms(models: dict[str, nn.Module], runtime: str, threads: int, repeats: int = 5, warmup: int = 2,
                    resolution: int | None = None) -> dict[str, float]:
    """Median latency (ms, batch 1) of each model (at ``resolution``, default its own) on ``runtime`` at ``threads``
    threads, all timed in one call, interleaved round-robin, so a slower phase of a shared machine hits them alike
    and their differences hold even when the absolute figures drift. ``ValueError`` (one line) when the runtime
    cannot run one of them."""
    from leangen.profile.runtimes import RUNTIMES, measure_runtimes

    models = {k: at_resolution(m, resolution) for k, m in models.items()}
    if runtime == "cuda":
        return measure_cuda(models, repeats, warmup)
    tag = RUNTIMES[runtime]
    rows = measure_runtimes(models, [runtime], [threads], batch=1, warmup=warmup, repeats=repeats)
    out = {}
    for name, row in rows.items():
        ms = row[f"latency_ms_{tag}_t{threads}"]
        if ms is None:
            raise ValueError(f"cannot time the model on {runtime}: {row[f'status_{tag}']}")
        out[name] = float(ms)
    return out


def measure_ms(model: nn.Module, runtime: str, threads: int, repeats: int = 5, warmup: int = 2,
               resolution: int | None = None) -> float:
    """``measure_many_ms`` of one model."""
    return measure_many_ms({"m": model}, runtime, threads, repeats, warmup, resolution)["m"]


def in_bursts(measure: Callable[[], float], bursts: int | None = None, pause_s: float | None = None) -> list[float]:
    """``measure()`` ``bursts`` times, ``pause_s`` apart (defaults: ``BURSTS``, ``BURST_PAUSE_S``)."""
    out = []
    for b in range(BURSTS if bursts is None else bursts):
        if b:
            time.sleep(BURST_PAUSE_S if pause_s is None else pause_s)
        out.append(measure())
    return out


def measure_cuda(models: dict[str, nn.Module], repeats: int = 5, warmup: int = 2) -> dict[str, float]:
    """Median latency (ms, batch 1) of each model in PyTorch eager on the current CUDA device, interleaved
    (``leangen.profile.timing.time_interleaved``, synchronised around every call); the models stay where they
    were. ``ValueError`` without a CUDA device."""
    import copy
    import statistics

    from leangen.profile.inputs import example_inputs
    from leangen.profile.timing import time_interleaved

    if not torch.cuda.is_available():
        raise ValueError("--runtime cuda needs a CUDA device; none is visible here")
    device = torch.device("cuda")
    calls = []
    for model in models.values():
        m = copy.deepcopy(model).to(device).eval()
        args, kwargs = example_inputs(m, 1, device=device)
        calls.append((m, args, kwargs))
    times = time_interleaved(calls, device, warmup, repeats, lambda _m: None)
    return {name: statistics.median(ts) * 1e3 for name, ts in zip(models, times)}


def narrowest(model: nn.Module, min_channels: int = 1) -> nn.Module:
    """A model of ``model``'s type and config with ``min_channels`` per width (freshly initialised: only its
    latency matters)."""
    from leangen.models.base import MODEL_TYPES

    config = dict(model.config)  # type: ignore[attr-defined]
    widths = list(config.get("channels") or model.widths)  # type: ignore[attr-defined]
    config["channels"] = [min(int(min_channels), int(w)) for w in widths]
    return MODEL_TYPES[model.model_type](**config).eval()  # type: ignore[attr-defined]


def choose_threshold(model: nn.Module, budget_ms: float, measure: Callable[[nn.Module], float],
                     min_channels: int = 1,
                     log: Callable[[str], None] | None = None) -> tuple[float, list[dict[str, Any]]]:
    """The smallest pruning threshold of ``model`` (a condensed model) whose pruned model's ``measure`` is at most
    ``budget_ms``, and the table of every probe (``threshold``, ``channels``, ``gmacs``, ``latency_ms``).
    ``LatencyUnreachable`` when the narrowest model does not meet it."""
    from leangen.compress.prune import _config, _keep, build_pruned, executed_macs
    from leangen.ops.group_lasso import channel_scores

    scores = channel_scores(model)
    ascending = torch.unique(torch.cat(scores)).tolist()
    candidates = [ascending[0] - 1.0, *ascending]  # first: keep every channel; last: min_channels per width
    table: list[dict[str, Any]] = []
    seen: dict[tuple[int, ...], float] = {}  # thresholds that keep the same widths are one model: time it once

    def fits(i: int) -> bool:
        kept = _keep(scores, candidates[i], min_channels)
        widths = tuple(int(k.numel()) for k in kept)
        if widths not in seen:
            seen[widths] = measure(build_pruned(model, kept))
            gmacs = executed_macs(model.model_type, _config(model, kept)) / 1e9  # type: ignore[attr-defined]
            table.append(dict(threshold=candidates[i], channels=list(widths), gmacs=gmacs, latency_ms=seen[widths]))
            if log:
                log(f"prune: {sum(widths)} channels, {gmacs:.4g} GMACs -> {seen[widths]:.3f} ms")
        return seen[widths] <= budget_ms

    lo, hi = 0, len(candidates) - 1  # answer: the smallest index that fits (hi fits once checked)
    if not fits(hi):
        best = table[-1]["latency_ms"]
        raise LatencyUnreachable(f"even the narrowest model ({min_channels} channel(s) per width) takes {best:.3f} ms "
                                 f"({1000 / best:.1f} FPS), over the target of {budget_ms:.3f} ms", best)
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(mid):
            hi = mid
        else:
            lo = mid + 1
    return float(candidates[lo]), table


def check_target(opts: "CompressOptions", teacher: nn.Module) -> None:
    """Refuse (``ValueError``, one line) a latency target that is not a finite positive number, is given with
    another budget, names an unknown runtime, or that even the narrowest model misses on this machine (measured
    here, before any training, naming the best figure reachable; not timed again once the prune step is done)."""
    given = {k: v for k, v in (("--target-fps", opts.target_fps), ("--target-ms", opts.target_ms)) if v is not None}
    if not given:
        if opts.target_resolution is not None:
            raise ValueError("--target-resolution sets where a latency target is timed: give --target-fps or "
                             "--target-ms with it")
        return
    res = opts.target_resolution
    if res is not None and (isinstance(res, bool) or not isinstance(res, int) or res <= 0):
        raise ValueError(f"--target-resolution must be a positive number of pixels, got {res}")
    if res is not None:
        at_resolution(teacher, res)  # refuses, in one line, sizes the model cannot run at
    if len(given) > 1 or opts.macs_budget is not None:
        names = list(given) + (["--gmacs"] if opts.macs_budget is not None else [])
        raise ValueError(f"give one budget, not {' and '.join(names)}")
    (name, value), = given.items()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value}")
    if opts.runtime not in TARGET_RUNTIMES:
        raise ValueError(f"--runtime must be one of {', '.join(TARGET_RUNTIMES)}, got {opts.runtime!r}")
    if opts.runtime == "cuda" and not torch.cuda.is_available():
        raise ValueError("--runtime cuda needs a CUDA device; none is visible here (use onnxruntime or torch)")
    if opts.runtime == "onnxruntime":
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise ValueError("--runtime onnxruntime needs the onnxruntime package; use --runtime torch") from None
    budget = target_ms(opts)
    assert budget is not None
    if (Path(opts.outdir) / "prune" / "report.json").is_file() and opts.redo != "prune":
        return  # widths already chosen: a resume must not be refused because the machine is busier now
    best = measure_ms(narrowest(teacher, opts.min_channels), opts.runtime, target_threads(opts), opts.repeats,
                      resolution=opts.target_resolution)
    if best > budget:
        raise ValueError(f"{describe(opts)} cannot be met: the narrowest model ({opts.min_channels} channel(s) per "
                         f"width) runs at {1000 / best:.1f} FPS ({best:.3f} ms) here; ask for at most that")


def achieved(opts: "CompressOptions", models: dict[str, nn.Module], rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The target against the exported teacher and student timed after distillation, each alone on the target
    runtime, thread count and resolution, as the width search timed its candidates and as a deployed model runs, in
    ``BURSTS`` bursts ``BURST_PAUSE_S`` apart (the median of the bursts' medians; ``*_ms_bursts`` lists them):
    ``runtime``, ``threads`` (None on CUDA), ``resolution``, ``target_ms``, ``target_fps``, the teacher's and
    student's measured ``*_ms``/``*_fps``, ``met``, and ``student_ms_interleaved``: deploy's figure for the same
    runtime with the two models interleaved (None at another size or on CUDA; the ratios of the report use it)."""
    from leangen.profile.runtimes import RUNTIMES

    budget = target_ms(opts)
    assert budget is not None
    own = int(models["student"].config.get("resolution", 0)) or None  # type: ignore[attr-defined]
    res = opts.target_resolution or own
    n = None if opts.runtime == "cuda" else target_threads(opts)
    # shared machines run in slower and faster phases of seconds: sample several
    bursts = {k: in_bursts(lambda m=m: measure_ms(m, opts.runtime, n or 1, opts.repeats, resolution=res))
              for k, m in models.items()}
    t_ms, s_ms = statistics.median(bursts["teacher"]), statistics.median(bursts["student"])
    interleaved = rows["student"].get(f"latency_ms_{RUNTIMES[opts.runtime]}_t{n}") if (
        opts.runtime != "cuda" and res == own) else None
    return dict(runtime=opts.runtime, threads=n, resolution=res, target_ms=budget, target_fps=1000.0 / budget,
                teacher_ms=t_ms, teacher_fps=1000.0 / t_ms, student_ms=s_ms, student_fps=1000.0 / s_ms,
                met=bool(s_ms <= budget), student_ms_interleaved=interleaved, student_ms_bursts=bursts["student"],
                teacher_ms_bursts=bursts["teacher"])
