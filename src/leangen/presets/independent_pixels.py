"""Presets of the independent-pixels likelihood floor (model types in ``leangen.models.independent_pixels``)."""
from __future__ import annotations

from leangen.presets.base import Preset, register_preset


def register() -> None:
    """Register this family's presets (called once by ``leangen.presets.load_all``)."""
    for res in (32, 64):
        register_preset(Preset(
            name=f"independent-pixels-{res}", family="independent-pixels", task="likelihood", resolution=res,
            objective="likelihood", components={"model": ("independent-pixels", dict(resolution=res))},
            training=dict(batch=32, lr=0.01, metrics=["bpd"]),
            description=f"one categorical per sub-pixel at {res}x{res}: the bits/dim floor of likelihood models"))
