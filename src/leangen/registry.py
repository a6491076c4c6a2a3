"""Named model presets, timm-style: ``name -> (components, training defaults, paper figures)``.

A preset names the model types and constructor arguments of its components (``G`` and, for GANs, ``D``), the
objective that trains it, training defaults the trainer starts from, and — for paper configurations — the paper's
own figures, which benchmarks print beside ours. Families register their presets when ``leangen.models`` imports
them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from leangen.models.base import PretrainedModel


@dataclass(frozen=True)
class Preset:
    name: str
    family: str                      # e.g. "stylegan2", "cips", "pixelfolder"
    task: str                        # what the model does, e.g. "unconditional"
    resolution: int
    objective: str                   # trainer objective, a name in ``leangen.train.objective.OBJECTIVES``: "gan"
    components: dict[str, tuple[str, dict[str, Any]]]  # role -> (model type, constructor kwargs)
    training: dict[str, Any] = field(default_factory=dict)  # defaults for the trainer/objective
    paper: dict[str, Any] = field(default_factory=dict)     # e.g. {"params_m": 30.03, "gmacs": 83.77, "source": "..."}
    description: str = ""

    @property
    def main_component(self) -> str:
        """The component users run (``G`` for generators and translators, ``model`` for likelihood models)."""
        return "G" if "G" in self.components else next(iter(self.components))

    def build(self, role: str = "G") -> "PretrainedModel":
        """Instantiate one component (randomly initialized)."""
        if role not in self.components:
            raise KeyError(f"preset {self.name!r} has no component {role!r} (has {', '.join(self.components)})")
        from leangen.models.base import MODEL_TYPES

        model_type, kwargs = self.components[role]
        return MODEL_TYPES[model_type](**kwargs)


#: GAN training recipe of every GAN preset, as in the official CIPS and PixelFolder training code: Adam 0.002 with
#: betas (0, 0.99), lazy R1 10 every 16 steps, no path-length regularization, no style mixing, G EMA over 10 kimg.
#: Presets add their batch (``{"batch": B, **GAN_RECIPE}``) and any overrides.
GAN_RECIPE: dict[str, Any] = dict(lr=0.002, betas=(0.0, 0.99), r1_gamma=10.0, r1_interval=16, pl_weight=0.0,
                                  pl_interval=4, style_mixing=0.0, ema_kimg=10.0)
#: ``GAN_RECIPE`` for the tiny CPU presets: batch 16, a short EMA and DiffAugment (few images, few kimg). R1 is set
#: per resolution by each preset.
GAN_RECIPE_TINY: dict[str, Any] = {"batch": 16, **GAN_RECIPE, "ema_kimg": 2.0, "diffaugment": "color,translation"}

PRESETS: dict[str, Preset] = {}


def register_preset(preset: Preset) -> Preset:
    if preset.name in PRESETS:
        raise ValueError(f"preset {preset.name!r} registered twice")
    PRESETS[preset.name] = preset
    return preset


def _ensure_loaded() -> None:
    import leangen.models  # noqa: F401  (registers model types and presets)


def get_preset(name: str) -> Preset:
    """Look up a preset by name; unknown names get a list of close matches."""
    _ensure_loaded()
    if name not in PRESETS:
        import difflib

        close = difflib.get_close_matches(name, PRESETS, n=5, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else "; run `leangen models` to list them"
        raise KeyError(f"unknown preset {name!r}{hint}")
    return PRESETS[name]


def list_presets(family: str | None = None) -> list[Preset]:
    _ensure_loaded()
    return [p for p in PRESETS.values() if family is None or p.family == family]


def build(name: str, role: str = "G") -> "PretrainedModel":
    """Build component ``role`` of preset ``name`` (random weights)."""
    return get_preset(name).build(role)
