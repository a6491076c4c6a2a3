"""``leangen serve``: a local web demo (gradio, the ``serve`` extra) over trained or given models.

Tabs: **Generate** (model, seeds, truncation; PixelFolder's stage strip), **Translate** (an uploaded or drawn label
map through ASAP-Net and its baselines, each with its latency), **Compare** (``leangen.profile`` table and chart),
**Compress** (a teacher beside its compressed student).

    from leangen.serve import build_app, launch
    launch(build_app({"ASAP-Net": "zoo:asapnet-openmojiseg32"}))   # http://127.0.0.1:7860

The computations are plain functions in ``leangen.serve.handlers`` (no gradio), the page is ``leangen.serve.app``.
"""
from __future__ import annotations

from typing import Any

from leangen.serve.models import DemoError, DemoModel, ModelSet


def build_app(models: "dict[str, str] | ModelSet | None" = None, device: Any = "cpu") -> Any:
    """The gradio app (see ``leangen.serve.app.build_app``); gradio is imported only here."""
    from leangen.serve.app import build_app as build

    return build(models, device)


def launch(app: Any, host: str = "127.0.0.1", port: int = 7860, block: bool = True) -> Any:
    """Serve ``app`` locally (see ``leangen.serve.app.launch``)."""
    from leangen.serve.app import launch as serve

    return serve(app, host, port, block)


__all__ = ["build_app", "launch", "ModelSet", "DemoModel", "DemoError"]
