"""The models a demo serves: display name -> source, loaded once, sorted by what each tab can do with them.

Sources are whatever ``leangen.load`` takes (``zoo:<name>``, a saved model folder, a snapshot, a run directory, a
preset name). The default is every zoo entry; without a zoo, a set of tiny presets with random weights (the UI says
so). Teacher/student pairs for the Compress tab come from zoo cards (a ``teacher`` entry) or from names: ``X`` and
``X-student`` / ``X student``.
"""
from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

# Without a zoo: one tiny model per tab role (random weights: the page shows structure and speed, not quality).
FALLBACK_SOURCES: dict[str, str] = {
    "PixelFolder": "pixelfolder-tiny32",
    "StyleGAN2": "stylegan2-tiny32",
    "StyleGAN2-student": "stylegan2-tiny32-student",
    "ASAP-Net": "asapnet-tiny32",
    "pix2pixHD-style": "pix2pixhd-tiny32",
    "SPADE": "spade-tiny32",
}

# Translate tab order: the efficient model first, then its baselines (model_type prefixes).
TRANSLATOR_ORDER = ("asapnet", "pix2pixhd", "spade")


class DemoError(ValueError):
    """Bad input or an unusable model: a one-line message the page shows as is (never a traceback)."""


@dataclass
class DemoModel:
    """One loaded model. ``random_weights``: loaded from a preset name (no training)."""

    name: str
    source: str
    model: torch.nn.Module
    card: dict[str, Any] | None = None
    random_weights: bool = False

    @property
    def kind(self) -> str:
        from leangen.models.pretrained import model_kind

        return model_kind(self.model)

    @property
    def label(self) -> str:
        """Family as the profile tables name it (``asapnet``, ``pixelfolder``...)."""
        from leangen.models.pretrained import model_label

        return model_label(self.model).removesuffix("-generator")

    @property
    def takes_label_maps(self) -> bool:
        return self.kind == "translator" and getattr(self.model, "input_kind", "labels") == "labels"


def zoo_module() -> Any | None:
    """``leangen.zoo`` when it is installed, else None."""
    try:
        return importlib.import_module("leangen.zoo")
    except ImportError:
        return None


def default_sources() -> tuple[dict[str, str], str | None]:
    """Every zoo entry (``{name: "zoo:<name>"}``), or the tiny fallback presets and a note saying they are untrained."""
    zoo = zoo_module()
    names = list(zoo.available()) if zoo is not None and hasattr(zoo, "available") else []
    if names:
        return {n: f"zoo:{n}" for n in names}, None
    return dict(FALLBACK_SOURCES), ("No model zoo found: these are tiny presets with random weights (pass "
                                    "--models name=source for trained ones).")


def _card(source: str) -> dict[str, Any] | None:
    zoo = zoo_module()
    if not source.startswith("zoo:") or zoo is None or not hasattr(zoo, "card"):
        return None
    try:
        return dict(zoo.card(source.removeprefix("zoo:")))
    except (KeyError, ValueError, FileNotFoundError):
        return None


def load_one(name: str, source: str, device: torch.device | str = "cpu") -> DemoModel:
    """``leangen.load(source)`` in eval mode; ``DemoError`` with a one-line reason when it cannot be loaded."""
    import leangen

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = leangen.load(source, device=device)
        except (FileNotFoundError, KeyError, ValueError, RuntimeError, OSError) as e:
            first = (str(e.args[0] if isinstance(e, KeyError) and e.args else e).strip().splitlines() or [""])[0]
            raise DemoError(f"{name}: cannot load {source!r} ({first or type(e).__name__})") from None
    random = any("randomly initialized" in str(w.message) for w in caught)
    return DemoModel(name, str(source), model.eval(), _card(str(source)), random)


@dataclass
class ModelSet:
    """The loaded models of a demo, by display name (insertion order kept), and the pairs of the Compress tab."""

    models: dict[str, DemoModel] = field(default_factory=dict)
    pairs: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)   # models that did not load (shown on the page)
    note: str | None = None                              # e.g. "random weights"

    @classmethod
    def load(cls, sources: dict[str, str] | None = None, device: torch.device | str = "cpu", strict: bool = False,
             log: Callable[[str], None] | None = None) -> "ModelSet":
        """Load ``sources`` (display name -> source; None: ``default_sources()``). A model that fails to load is
        recorded in ``problems`` and left out; ``strict``: ``DemoError`` instead (models the user named)."""
        note = None
        if sources is None:
            sources, note = default_sources()
        out = cls(note=note)
        for name, source in sources.items():
            if log:
                log(f"loading {name} ({source})")
            try:
                out.models[name] = load_one(name, source, device)
            except DemoError as e:
                if strict:
                    raise
                out.problems.append(str(e))
        out.pairs = find_pairs(out.models)
        return out

    def names(self, *kinds: str) -> list[str]:
        """Display names of the models of ``kinds`` (all when none given)."""
        return [n for n, m in self.models.items() if not kinds or m.kind in kinds]

    def label_translators(self) -> list[str]:
        """Label-map translators, the efficient one (ASAP-Net) first, then its baselines, then the others."""
        names = [n for n, m in self.models.items() if m.takes_label_maps]

        def rank(n: str) -> int:
            label = self.models[n].label
            return next((i for i, p in enumerate(TRANSLATOR_ORDER) if label.startswith(p)), len(TRANSLATOR_ORDER))

        return sorted(names, key=rank)

    def get(self, name: str) -> DemoModel:
        if name not in self.models:
            raise DemoError(f"no model named {name!r} in this demo; choose one of: {', '.join(self.models) or 'none'}")
        return self.models[name]


def find_pairs(models: dict[str, DemoModel]) -> list[tuple[str, str]]:
    """(teacher, student) display names: from a card's ``teacher`` (a zoo name or display name), else by name
    (``X`` with ``X-student``, ``X student`` or ``X_student``). Both of one kind."""
    by_source = {m.source.removeprefix("zoo:"): n for n, m in models.items()}
    pairs = []
    for name, m in models.items():
        teacher = (m.card or {}).get("teacher")
        if isinstance(teacher, str):
            teacher = by_source.get(teacher.removeprefix("zoo:"), teacher)
        else:
            stem = name.lower()
            for suffix in ("-student", " student", "_student"):
                if stem.endswith(suffix):
                    base = stem.removesuffix(suffix)
                    teacher = next((n for n in models if n.lower() == base), None)
                    break
        if teacher in models and teacher != name and models[teacher].kind == m.kind:
            pairs.append((teacher, name))
    return pairs
