"""What each tab computes, as plain functions of a ``ModelSet`` (no gradio here: tests call them directly).

Images come back as uint8 ``[H, W, 3]`` arrays, enlarged by whole pixels (nearest) so 32-pixel models are visible.
Bad input raises ``DemoError`` with a one-line message. Latencies are medians of ``repeats`` timed calls after one
untimed call (first calls pay for allocation and caches), in milliseconds, on the models' device; the models compared
on one page are timed interleaved (``timed``).
"""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import numpy as np
import torch

from leangen.serve.labelmaps import colorize, example_labels, resize_labels
from leangen.serve.models import DemoError, DemoModel, ModelSet

MAX_SEEDS = 64          # per click: the page stays interactive
MAX_STAGE_SEEDS = 4     # rows of the PixelFolder stage strip
MIN_TILE = 128          # images are enlarged to at least this many pixels a side on the page


def enlarge(image: np.ndarray, tile: int, min_tile: int = MIN_TILE) -> np.ndarray:
    """Nearest-neighbour upscale ``[H, W, C]`` by the integer factor that makes a ``tile``-pixel image ``min_tile``."""
    k = max(1, -(-min_tile // max(tile, 1)))
    return np.ascontiguousarray(image.repeat(k, axis=0).repeat(k, axis=1)) if k > 1 else image


def _grid(images: torch.Tensor, ncols: int | None = None) -> np.ndarray:
    from leangen.models.images import image_grid

    return enlarge(np.ascontiguousarray(image_grid(images, ncols)), images.shape[-1])


def timed(fns: list[Callable[[], Any]], repeats: int = 3,
          device: torch.device | None = None) -> tuple[list[Any], list[float]]:
    """Each ``fn()``'s result and median latency in ms: one untimed call each, then ``repeats`` rounds that call
    every function once in turn (interleaved, so a busy moment of the machine does not land on one model only)."""
    from leangen.profile import device as profile_device

    def sync() -> None:
        if device is not None:
            profile_device.sync(device)

    with torch.inference_mode():
        outs = [fn() for fn in fns]
        times: list[list[float]] = [[] for _ in fns]
        for _ in range(max(1, repeats)):
            for i, fn in enumerate(fns):
                sync()
                t0 = time.perf_counter()
                outs[i] = fn()
                sync()
                times[i].append(time.perf_counter() - t0)
    return outs, [statistics.median(t) * 1e3 for t in times]


def model_device(model: torch.nn.Module) -> torch.device:
    """Where ``model``'s parameters are (the CPU for a model without any)."""
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def parse_demo_seeds(text: str) -> list[int]:
    """``"0-7"`` / ``"1,5,9"`` -> seeds; ``DemoError`` for text that is no seed list or asks for more than
    ``MAX_SEEDS``."""
    from leangen.utils.seeds import parse_seeds

    try:
        seeds = parse_seeds(str(text or "").strip())
    except ValueError as e:
        raise DemoError(f"{e}".replace("bad seed list", "seeds: bad list")) from None
    if len(seeds) > MAX_SEEDS:
        raise DemoError(f"{len(seeds)} seeds; the demo draws at most {MAX_SEEDS} per click")
    return seeds


def _sample(dm: DemoModel, seeds: list[int], truncation: float, temperature: float) -> torch.Tensor:
    """Images ``[N, 3, H, W]`` in [-1, 1] from a generator (truncation) or a likelihood model (temperature)."""
    if dm.kind == "generator":
        return dm.model.generate(seeds, truncation=float(truncation), output_type="pt")
    if dm.kind == "likelihood":
        if not temperature or temperature < 1e-3:
            raise DemoError("temperature must be at least 0.001")
        return dm.model.generate(seeds, temperature=float(temperature), output_type="pt")
    raise DemoError(f"{dm.name} is a {dm.kind}; the Generate tab takes generators and likelihood models")


def stage_rows(model: torch.nn.Module, seeds: list[int], truncation: float) -> np.ndarray | None:
    """PixelFolder's intermediate images: one row per seed (at most ``MAX_STAGE_SEEDS``), one column per stage, each
    stage upsampled (nearest) to the final size so its real pixels show; None for models without stages."""
    import inspect

    from leangen.utils.seeds import latents_for_seeds

    synthesis = getattr(model, "synthesis", None)
    if synthesis is None or "return_stages" not in inspect.signature(synthesis).parameters:
        return None
    seeds = seeds[:MAX_STAGE_SEEDS]
    with torch.inference_mode():
        ws = model.map(latents_for_seeds(seeds, model.z_dim).to(model_device(model)), truncation_psi=float(truncation))
        final, stages = synthesis(ws, noise_mode="const", return_stages=True)
    size = final.shape[-1]
    ups = [torch.nn.functional.interpolate(s.float().cpu(), size=(size, size), mode="nearest") for s in stages]
    tiles = torch.stack(ups, dim=1).flatten(0, 1)  # [seed0 stage0, seed0 stage1, ..., seed1 stage0, ...]
    return _grid(tiles, ncols=len(stages))


def generate(models: ModelSet, name: str, seeds: str, truncation: float = 1.0,
             temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Generate tab: (grid of the seeds' images, PixelFolder stage strip or None, status line)."""
    dm = models.get(name)
    seed_list = parse_demo_seeds(seeds)
    t0 = time.perf_counter()
    with torch.inference_mode():
        images = _sample(dm, seed_list, truncation, temperature)
    ms = (time.perf_counter() - t0) * 1e3
    strip = stage_rows(dm.model, seed_list, truncation) if dm.kind == "generator" else None
    h, w = images.shape[-2:]
    knob = f"truncation {truncation:g}" if dm.kind == "generator" else f"temperature {temperature:g}"
    status = (f"{dm.name}: {len(seed_list)} image(s) of {w}x{h}, {knob}, {ms:.0f} ms"
              + (" (random weights)" if dm.random_weights else "")
              + (f"; stage strip of the first {min(len(seed_list), MAX_STAGE_SEEDS)} seed(s), one column per stage"
                 if strip is not None else ""))
    return _grid(images), strip, status


def check_label_map(dm: DemoModel, labels: np.ndarray) -> None:
    """``DemoError`` naming the model when it cannot take ``labels`` (ids past its classes, a size it refuses)."""
    k = int(dm.model.num_classes)
    if labels.size and (labels.min() < 0 or labels.max() >= k):
        raise DemoError(f"{dm.name}: label ids must be in 0..{k - 1}; this map has {labels.min()}..{labels.max()}")
    h, w = labels.shape
    try:
        dm.model.check_input_size(h, w)
    except ValueError as e:
        raise DemoError(f"{dm.name}: {e}") from None


def translate(models: ModelSet, labels: np.ndarray, names: list[str] | None = None, repeats: int = 3,
              fit_size: bool = False) -> tuple[list[tuple[np.ndarray, str]], list[list[Any]], str]:
    """Translate tab: the label map through each translator in ``names`` (default: all, ASAP-Net first).

    ``fit_size``: resize the map (nearest) to each model's resolution (drawings); otherwise a size a model refuses
    is reported. Returns (gallery items ``(image, caption)``, the coloured input first; table rows ``[model, family,
    params, latency ms]``; status line). ``DemoError`` when no chosen model can take the map."""
    from leangen.profile import count_params

    order = models.label_translators()
    chosen = [n for n in order if names is None or n in names]
    if not chosen:
        raise DemoError("no label-map translator chosen" if order else "this demo has no label-map translator")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.ndim != 2:
        raise DemoError(f"a label map is one channel of class ids [H, W]; got an array of shape {labels.shape}")
    runnable: list[tuple[DemoModel, torch.Tensor]] = []
    refused: list[str] = []
    for name in chosen:
        dm = models.get(name)
        res = int(getattr(dm.model, "img_resolution", labels.shape[0]) or labels.shape[0])
        m = resize_labels(labels, res, res) if fit_size else labels
        try:
            check_label_map(dm, m)
        except DemoError as e:
            refused.append(str(e))
            continue
        runnable.append((dm, torch.from_numpy(np.ascontiguousarray(m))[None]))
    fns = [lambda dm=dm, x=x: dm.model.translate(x, output_type="pt", batch_size=1) for dm, x in runnable]
    outs, times = timed(fns, repeats, model_device(runnable[0][0].model) if runnable else None)
    gallery = [(_grid(out), f"{dm.name} ({dm.label}) · {ms:.1f} ms") for (dm, _), out, ms in zip(runnable, outs, times)]
    rows = [[dm.name, dm.label, count_params(dm.model), round(ms, 2)] for (dm, _), ms in zip(runnable, times)]
    if not gallery:
        raise DemoError("; ".join(refused))
    gallery.insert(0, (enlarge(colorize(labels), labels.shape[0]), f"label map {labels.shape[1]}x{labels.shape[0]}"))
    status = f"{len(rows)} translator(s), latency = median of {repeats} interleaved runs, batch 1"
    if refused:
        status += "; left out: " + "; ".join(refused)
    return gallery, rows, status


PROFILE_COLUMNS = ["model", "family", "task", "params (M)", "GMACs", "latency (ms)", "peak mem (MB)"]


def profile(models: ModelSet, names: list[str] | None = None, repeats: int = 3) -> tuple[list[list[Any]], Any]:
    """Compare tab: ``leangen.profile.profile_models`` on the loaded models (batch 1, interleaved timing) ->
    (rows of ``PROFILE_COLUMNS``, a matplotlib figure of params, GMACs and latency per model)."""
    from leangen.profile import profile_models

    chosen = [n for n in models.models if names is None or n in names]
    if not chosen:
        raise DemoError("choose at least one model to profile")
    mods = [models.get(n).model for n in chosen]
    dev = model_device(mods[0])
    results = profile_models(mods, device=dev, batch=1, warmup=1, repeats=max(1, repeats))
    rows = []
    for name, r in zip(chosen, results):
        def rnd(v: Any, d: int) -> Any:
            return None if v is None else round(float(v), d)

        rows.append([name, r["family"], r["task"], rnd(r["params"] / 1e6, 3), rnd(r["gmacs"], 4),
                     rnd(r["latency_ms"], 2), rnd(r["peak_mem_mb"], 1)])
    return rows, profile_figure(rows)


def profile_figure(rows: list[list[Any]]) -> Any:
    """Three bar charts (params, GMACs, latency) of profile rows, one bar per model."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a server
    from matplotlib.figure import Figure

    names = [r[0] for r in rows]
    fig = Figure(figsize=(10, 3.2), layout="constrained")
    for ax, col, title in zip(fig.subplots(1, 3), (3, 4, 5), ("params (M)", "GMACs / image", "latency (ms, batch 1)")):
        ax.bar(range(len(names)), [r[col] or 0 for r in rows], color="#4a7bd0")
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
    return fig


def compress(models: ModelSet, teacher: str, student: str, seeds: str = "0-3",
             repeats: int = 5) -> tuple[np.ndarray, np.ndarray, list[list[Any]], str]:
    """Compress tab: teacher and student on the same input (generators: the seeds; translators: the example label
    map at their resolution) -> (teacher image, student image, rows ``[role, model, params, latency ms]``, status)."""
    from leangen.profile import count_params

    t, s = models.get(teacher), models.get(student)
    if t.kind != s.kind:
        raise DemoError(f"{teacher} is a {t.kind} and {student} a {s.kind}: compare a teacher with its own student")
    if teacher == student:
        raise DemoError("choose two different models: a teacher and its compressed student")
    if t.kind not in ("generator", "translator") or (t.kind == "translator" and not t.takes_label_maps):
        raise DemoError(f"the Compress tab compares generators or label-map translators, not {t.kind}s")
    seed_list = parse_demo_seeds(seeds) if t.kind == "generator" else []
    fns = []
    for dm in (t, s):
        if dm.kind == "generator":
            fns.append(lambda dm=dm: dm.model.generate(seed_list, output_type="pt"))
        else:
            labels = example_labels(int(dm.model.img_resolution))
            check_label_map(dm, labels)
            fns.append(lambda dm=dm, x=torch.from_numpy(labels)[None]: dm.model.translate(x, output_type="pt"))
    outs, times = timed(fns, repeats, model_device(t.model))
    rows = [[role, dm.name, count_params(dm.model), round(ms, 2)]
            for role, dm, ms in zip(("teacher", "student"), (t, s), times)]
    ratio_p = rows[0][2] / max(rows[1][2], 1)
    ratio_t = times[0] / max(times[1], 1e-9)
    speed = f"{ratio_t:.2f}x faster" if ratio_t >= 1 else f"{1 / ratio_t:.2f}x slower"
    status = (f"student: {ratio_p:.2f}x fewer parameters, {speed} (median of {repeats} interleaved runs"
              + (f", {len(seed_list)} seeds" if seed_list else ", the example label map") + ")")
    outs = [_grid(o) for o in outs]
    return outs[0], outs[1], rows, status
