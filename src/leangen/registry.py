"""Old home of the presets, kept so ``from leangen.registry import ...`` keeps working: see ``leangen.presets``."""
from __future__ import annotations

from leangen.presets import FAMILIES, PRESETS, Preset, build, get_preset, list_presets, load_all, register_preset
from leangen.presets.recipes import GAN_RECIPE, GAN_RECIPE_TINY

__all__ = ["FAMILIES", "GAN_RECIPE", "GAN_RECIPE_TINY", "PRESETS", "Preset", "build", "get_preset", "list_presets",
           "load_all", "register_preset"]
