"""Named model presets, timm-style: ``name -> (components, training recipe, paper figures)``; one module per family.

Discovery is explicit: ``FAMILIES`` lists the family modules, each with a ``register()`` that adds its presets;
``load_all`` runs them once, the first time a preset is looked up. Recipes shared by several families are named once
in ``leangen.presets.recipes``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from leangen.presets.base import FAMILIES, PRESETS, ComponentError, Preset, register_preset

if TYPE_CHECKING:
    from leangen.models.base import PretrainedModel


def load_all() -> None:
    """Register every family's presets (once; looking a preset up does it too)."""
    PRESETS.discover()


def get_preset(name: str) -> Preset:
    """Look up a preset by name; unknown names raise ``UnknownName`` (a ``KeyError``) listing close matches."""
    return PRESETS[name]


def list_presets(family: str | None = None) -> list[Preset]:
    """Every preset, or those of ``family``."""
    return [p for p in PRESETS.values() if family is None or p.family == family]


def build(name: str, role: str = "G", **overrides: Any) -> "PretrainedModel":
    """``get_preset(name).build(role, **overrides)``: component ``role`` of preset ``name`` (random weights)."""
    return PRESETS[name].build(role, **overrides)


__all__ = ["ComponentError", "FAMILIES", "PRESETS", "Preset", "build", "get_preset", "list_presets", "load_all",
           "register_preset"]
