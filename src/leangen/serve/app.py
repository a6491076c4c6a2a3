"""The gradio page of ``leangen serve``: Generate, Translate, Compare and Compress tabs over one ``ModelSet``.

Every event goes through ``_guard``: bad input (``DemoError``, ``ValueError``) and any other failure become a
``gr.Error`` with one readable line; tracebacks go to the server log only. Analytics are switched off before gradio
is imported and nothing is shared: the page and its assets come from this machine.
"""
from __future__ import annotations

import functools
import os
import sys
import traceback
from typing import Any, Callable

import numpy as np
import torch

from leangen.serve import handlers
from leangen.serve.labelmaps import CLASS_NAMES, drawing_to_labels, example_labels, palette_hex, read_upload
from leangen.serve.models import DemoError, ModelSet

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported: it reads the variable at import, too

TITLE = "leangen demo"


def _guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run a handler; its failures reach the page as one line (``gr.Error``), never a traceback."""
    import gradio as gr

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except DemoError as e:
            raise gr.Error(str(e), print_exception=False) from None
        except Exception as e:  # a bug or an unexpected input: one line on the page, the traceback in the log
            traceback.print_exc(file=sys.stderr)
            first = (str(e).strip().splitlines() or [""])[0]
            raise gr.Error(f"{type(e).__name__}: {first}" if first else type(e).__name__,
                           print_exception=False) from None

    return wrapper


def build_app(models: dict[str, str] | ModelSet | None = None, device: torch.device | str = "cpu") -> Any:
    """The demo as a ``gr.Blocks`` (call ``.launch()`` or use ``launch``).

    Args:
        models: display name -> source (``zoo:<name>``, a saved model, snapshot or run directory, a preset name), or
            an already loaded ``ModelSet``; None: every zoo entry (tiny random-weight presets without a zoo).
        device: where the models run.
    """
    import gradio as gr

    ms = models if isinstance(models, ModelSet) else ModelSet.load(models, device=device)
    gens = ms.names("generator", "likelihood")
    trans = ms.label_translators()
    notes = ([f"**Note:** {ms.note}"] if ms.note else []) + [f"**Not loaded:** {p}" for p in ms.problems]
    with gr.Blocks(title=TITLE, analytics_enabled=False) as app:
        gr.Markdown(f"# {TITLE}\nEfficient image generation: {len(ms.models)} model(s) loaded on "
                    f"`{handlers.model_device(next(iter(ms.models.values())).model) if ms.models else device}`."
                    + ("\n\n" + "\n\n".join(notes) if notes else ""))
        with gr.Tab("Generate", id="generate"):
            _generate_tab(gr, ms, gens)
        with gr.Tab("Translate", id="translate"):
            _translate_tab(gr, ms, trans)
        with gr.Tab("Compare", id="compare"):
            _compare_tab(gr, ms)
        with gr.Tab("Compress", id="compress"):
            _compress_tab(gr, ms)
    return app


def _generate_tab(gr: Any, ms: ModelSet, gens: list[str]) -> None:
    if not gens:
        gr.Markdown("No generator or likelihood model is loaded.")
        return
    with gr.Row():
        model = gr.Dropdown(gens, value=gens[0], label="model")
        seeds = gr.Textbox("0-7", label="seeds", placeholder="0-7 or 1,5,9")
        trunc = gr.Slider(0.0, 1.0, value=1.0, step=0.05, label="truncation ψ (generators)")
        temp = gr.Slider(0.05, 1.5, value=1.0, step=0.05, label="temperature (likelihood models)")
    button = gr.Button("Generate", variant="primary", elem_id="generate-button")
    status = gr.Markdown(elem_id="generate-status")
    grid = gr.Image(label="samples", type="numpy", format="png", elem_id="generate-grid", interactive=False)
    strip = gr.Image(label="PixelFolder stages (coarse to fine, one row per seed)", type="numpy", format="png",
                     elem_id="generate-stages", interactive=False, visible=False)

    def run(name: str, seed_text: str, psi: float, t: float) -> tuple[Any, Any, str]:
        image, stages, text = handlers.generate(ms, name, seed_text, psi, t)
        return image, gr.update(value=stages, visible=stages is not None), text

    button.click(_guard(run), [model, seeds, trunc, temp], [grid, strip, status])


def _translate_tab(gr: Any, ms: ModelSet, trans: list[str]) -> None:
    if not trans:
        gr.Markdown("No label-map translator is loaded.")
        return
    colours = ", ".join(f"{i} {n}" for i, n in enumerate(CLASS_NAMES))
    gr.Markdown(f"Upload a label map PNG (indexed or greyscale: pixel values are class ids; colour PNGs are read "
                f"in the class colours) or draw one. Classes: {colours}.")
    with gr.Row():
        upload = gr.File(label="label map PNG", file_count="single", type="filepath", elem_id="translate-upload")
        sketch = gr.ImageEditor(label="or draw (class colours)", type="numpy", image_mode="RGBA", format="png",
                                sources=(), canvas_size=(256, 256), layers=False, transforms=(),
                                brush=gr.Brush(colors=palette_hex(), default_color=palette_hex()[4], color_mode="fixed",
                                               default_size=12),
                                elem_id="translate-sketch")
    chosen = gr.CheckboxGroup(trans, value=trans, label="translators")
    with gr.Row():
        from_upload = gr.Button("Translate upload", variant="primary", elem_id="translate-button")
        from_sketch = gr.Button("Translate drawing", elem_id="translate-drawing-button")
        from_example = gr.Button("Translate the example", elem_id="translate-example-button")
    status = gr.Markdown(elem_id="translate-status")
    gallery = gr.Gallery(label="outputs (latency: median of 3 runs, batch 1)", columns=4, height="auto",
                         elem_id="translate-gallery", format="png")
    table = gr.Dataframe(headers=["model", "family", "params", "latency (ms)"], label="latency",
                         interactive=False, elem_id="translate-table")

    def run_upload(path: str | None, names: list[str]) -> tuple[Any, Any, str]:
        if not path:
            raise DemoError("upload a label map PNG first")
        labels, how = read_upload(path)
        items, rows, text = handlers.translate(ms, labels, names)
        return items, rows, f"{how}. {text}"

    def run_sketch(drawing: dict[str, Any] | None, names: list[str]) -> tuple[Any, Any, str]:
        composite = (drawing or {}).get("composite")
        if composite is None:
            raise DemoError("draw a label map first (or upload one)")
        labels = drawing_to_labels(composite)
        classes = ", ".join(CLASS_NAMES[i] for i in np.unique(labels))
        items, rows, text = handlers.translate(ms, labels, names, fit_size=True)
        return items, rows, f"drawing ({classes}), resized to each model's resolution. {text}"

    def run_example(names: list[str]) -> tuple[Any, Any, str]:
        items, rows, text = handlers.translate(ms, example_labels(64), names, fit_size=True)
        return items, rows, "example label map. " + text

    outs = [gallery, table, status]
    from_upload.click(_guard(run_upload), [upload, chosen], outs)
    from_sketch.click(_guard(run_sketch), [sketch, chosen], outs)
    from_example.click(_guard(run_example), [chosen], outs)


def _compare_tab(gr: Any, ms: ModelSet) -> None:
    names = list(ms.models)
    gr.Markdown("Parameters, multiply-adds per image and batch-1 latency of the loaded models, measured now on this "
                "machine (`leangen.profile`: interleaved timing, median of the timed rounds).")
    chosen = gr.CheckboxGroup(names, value=names, label="models")
    repeats = gr.Slider(1, 20, value=3, step=1, label="timed rounds")
    button = gr.Button("Profile", variant="primary", elem_id="compare-button")
    table = gr.Dataframe(headers=handlers.PROFILE_COLUMNS, label="profile", interactive=False,
                         elem_id="compare-table")
    plot = gr.Plot(label="params, GMACs, latency", elem_id="compare-plot")

    def run(selected: list[str], r: float) -> tuple[Any, Any]:
        return handlers.profile(ms, selected, int(r))

    button.click(_guard(run), [chosen, repeats], [table, plot])


def _compress_tab(gr: Any, ms: ModelSet) -> None:
    names = ms.names("generator", "translator")
    if len(names) < 2:
        gr.Markdown("Load a teacher and its compressed student (e.g. `--models teacher=... teacher-student=...`).")
        return
    teacher0, student0 = ms.pairs[0] if ms.pairs else (names[0], names[1])
    gr.Markdown("A teacher and its compressed student on the same input (generators: the seeds; translators: the "
                "example label map): outputs side by side, parameters and latency.")
    with gr.Row():
        teacher = gr.Dropdown(names, value=teacher0, label="teacher")
        student = gr.Dropdown(names, value=student0, label="student")
        seeds = gr.Textbox("0-3", label="seeds (generators)")
    button = gr.Button("Compare teacher and student", variant="primary", elem_id="compress-button")
    status = gr.Markdown(elem_id="compress-status")
    with gr.Row():
        before = gr.Image(label="teacher", type="numpy", format="png", interactive=False, elem_id="compress-teacher")
        after = gr.Image(label="student", type="numpy", format="png", interactive=False, elem_id="compress-student")
    table = gr.Dataframe(headers=["role", "model", "params", "latency (ms)"], interactive=False,
                         elem_id="compress-table")

    def run(t: str, s: str, seed_text: str) -> tuple[Any, Any, Any, str]:
        return handlers.compress(ms, t, s, seed_text)

    button.click(_guard(run), [teacher, student, seeds], [before, after, table, status])


def launch(app: Any, host: str = "127.0.0.1", port: int = 7860, block: bool = True) -> Any:
    """Serve ``app`` on ``host:port``: no share link, no analytics, no browser opened; ``block=False`` returns at once
    (tests)."""
    return app.launch(server_name=host, server_port=port, share=False, inbrowser=False, quiet=not block,
                      prevent_thread_lock=not block, show_error=True)
