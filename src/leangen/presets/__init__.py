"""Named model presets, timm-style: ``name -> (components, training recipe, paper figures)``; one module per family.

Discovery is explicit: ``FAMILIES`` lists the family modules, each with a ``register()`` that adds its presets;
``load_all`` runs them once, the first time a preset is looked up. Recipes shared by several families are named once
in ``leangen.presets.recipes``.
"""
from __future__ import annotations

import difflib
import importlib
from typing import TYPE_CHECKING

from leangen.presets.base import PRESETS, Preset, register_preset

if TYPE_CHECKING:
    from leangen.models.base import PretrainedModel

#: Family modules of ``leangen.presets``, in the order ``leangen models`` lists them.
FAMILIES: tuple[str, ...] = ("stylegan2", "cips", "pixelfolder", "conv_translator", "independent_pixels", "asapnet",
                             "ar_decoder", "spn", "resnet", "unet", "stylenat", "pix2pixhd", "spade")
_loaded = False


def load_all() -> None:
    """Register every family's presets (once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for name in FAMILIES:
        importlib.import_module(f"leangen.presets.{name}").register()


def get_preset(name: str) -> Preset:
    """Look up a preset by name; unknown names get a list of close matches."""
    load_all()
    if name not in PRESETS:
        close = difflib.get_close_matches(name, PRESETS, n=5, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else "; run `leangen models` to list them"
        raise KeyError(f"unknown preset {name!r}{hint}")
    return PRESETS[name]


def list_presets(family: str | None = None) -> list[Preset]:
    """Every preset, or those of ``family``."""
    load_all()
    return [p for p in PRESETS.values() if family is None or p.family == family]


def build(name: str, role: str = "G") -> "PretrainedModel":
    """Build component ``role`` of preset ``name`` (random weights)."""
    return get_preset(name).build(role)


__all__ = ["FAMILIES", "PRESETS", "Preset", "build", "get_preset", "list_presets", "load_all", "register_preset"]
