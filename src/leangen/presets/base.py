"""What a preset is: named components (model type + constructor arguments), the objective that trains them, the
training recipe the trainer starts from and, for paper configurations, the paper's own figures.

``PRESETS`` is filled by the family modules of ``leangen.presets`` named in ``FAMILIES`` (explicit discovery: each
module's ``register()`` runs the first time a preset is looked up); nothing here imports a family by name.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from leangen.utils.registry import Registry

if TYPE_CHECKING:
    from leangen.models.base import PretrainedModel


@dataclass(frozen=True)
class Preset:
    """One named configuration (``leangen models`` lists them)."""

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

    def build(self, role: str = "G", **overrides: Any) -> "PretrainedModel":
        """Instantiate component ``role`` (random weights), its constructor arguments updated by ``overrides``.

        The one way to build a component from a preset: the trainer, ``leangen.load`` and the CLI all come here.
        """
        if role not in self.components:
            raise ComponentError(f"preset {self.name!r} has no component {role!r} (has {', '.join(self.components)})")
        from leangen.models import MODEL_TYPES  # importing the package registers every model type

        model_type, kwargs = self.components[role]
        try:
            return MODEL_TYPES[model_type](**{**kwargs, **overrides})
        except TypeError as e:  # an override the constructor does not take
            raise ValueError(f"cannot build {role} ({model_type}) of preset {self.name!r}: {e}") from None


class ComponentError(KeyError, ValueError):
    """A preset has no component of that role (a ``KeyError``, and a ``ValueError`` as the trainer raised before)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


#: Family modules of ``leangen.presets``, in the order ``leangen models`` lists them.
FAMILIES: tuple[str, ...] = ("stylegan2", "cips", "pixelfolder", "conv_translator", "independent_pixels", "asapnet",
                             "ar_decoder", "spn", "resnet", "unet", "stylenat", "pix2pixhd", "spade")


def _register_families() -> None:
    for name in FAMILIES:
        importlib.import_module(f"leangen.presets.{name}").register()


PRESETS: Registry = Registry("preset", discover=_register_families, hint="run `leangen models` to list them")


def register_preset(preset: Preset) -> Preset:
    """Add ``preset`` under its name (``ValueError`` on a name registered twice)."""
    return PRESETS.register(preset.name, preset)
