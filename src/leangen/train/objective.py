"""The contract between the training loop and what it trains.

The loop (``leangen.train.loop``) owns everything that is the same for every model: devices, AMP, distributed
processes, the data iterator, EMA, step/kimg counting, ticks, logging, sample grids, snapshots and resume. An
*objective* owns what differs: which networks exist, their optimizers and the losses of one training step.
``gan`` is the first objective; likelihood, translation and distillation objectives plug in the same way and are
looked up by the preset's ``objective`` field (``OBJECTIVES`` below).

Life cycle, as the loop drives it::

    obj = ObjectiveClass()
    obj.build(preset, runtime, options)          # networks (seeded identically on every rank), optimizers
    [loop loads a snapshot into obj.modules(), obj.optimizers(), obj.load_state_dict(...)]
    for step in ...:
        stats = obj.train_step(batch, step)      # all phases of one step; grads synced through runtime
        [loop: EMA of obj.ema_pairs(), counters, logs]
    obj.sample(seeds)                            # images for the sample grids
    obj.eval_model()                             # the network metrics are computed on
"""
from __future__ import annotations

import abc
import importlib
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence

import torch
from torch import nn

if TYPE_CHECKING:
    from leangen.registry import Preset
    from leangen.train.loop import Runtime
    from leangen.train.options import TrainOptions

# objective name (the preset's ``objective`` field) -> "module:Class", imported only when used.
OBJECTIVES: dict[str, str] = {
    "gan": "leangen.train.gan:GANObjective",
}


class Objective(abc.ABC):
    """What the loop trains. Subclasses implement ``build``, ``modules``, ``optimizers``, ``train_step``, ``sample``.

    Class attributes:
        name: the objective's name (matches ``Preset.objective``).
        hparams: objective hyper-parameters and their defaults. The preset's ``training`` dict and the command
            line override them; the resolved values arrive as ``options.hparams``. Unknown keys are an error.

    Methods (see each docstring):
        build(preset, runtime, options)  create networks and optimizers on ``runtime.device``.
        modules() -> {name: PretrainedModel}  every network to checkpoint; each is written with ``save_pretrained``
            into ``<snapshot>/<name>/`` (so ``leangen.load(snapshot)`` finds ``G_ema``).
        optimizers() -> {name: Optimizer}  their states go into ``training_state.pt``.
        ema_pairs() -> {target: source}  modules the loop keeps as an EMA of another (``{"G_ema": "G"}``).
        train_step(batch, step) -> {stat: scalar tensor}  one full step (all phases); ``batch`` is this rank's
            float images in [-1, 1] on the device; ``step`` counts optimizer steps from 0 (for lazy
            regularization). Values are detached 0-dim tensors (the loop syncs them once per step and stops on a
            non-finite one).
        state_dict() / load_state_dict(d)  extra state (running means, augmentation probability...): tensors,
            numbers, strings, lists and dicts only, so ``torch.load(weights_only=True)`` reads it back.
        sample(seeds) -> images ``[N, 3, H, W]`` in [-1, 1] on the CPU, deterministic per seed (sample grids).
        eval_model() -> the network metrics evaluate (``G_ema`` for GANs).
    """

    name: ClassVar[str] = ""
    hparams: ClassVar[Mapping[str, Any]] = {}

    @abc.abstractmethod
    def build(self, preset: "Preset", runtime: "Runtime", options: "TrainOptions") -> None:
        """Create networks and optimizers. The loop seeds the RNG identically on every rank before calling it."""

    @abc.abstractmethod
    def modules(self) -> dict[str, nn.Module]:
        """Networks to checkpoint, by name (each a ``PretrainedModel``)."""

    @abc.abstractmethod
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Optimizers to checkpoint, by name."""

    def ema_pairs(self) -> dict[str, str]:
        """``{ema_module: source_module}``; the loop updates each target as an EMA of its source after every step."""
        return {}

    @abc.abstractmethod
    def train_step(self, batch: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        """Run one training step (every phase) and return detached scalar statistics."""

    def state_dict(self) -> dict[str, Any]:
        """Extra state beyond modules and optimizers (default: none)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""

    @abc.abstractmethod
    def sample(self, seeds: Sequence[int]) -> torch.Tensor:
        """Deterministic images for ``seeds`` as float ``[N, 3, H, W]`` in [-1, 1] on the CPU."""

    def eval_model(self) -> nn.Module:
        """The network that metrics evaluate (default: ``G_ema`` if present, else ``G``)."""
        mods = self.modules()
        return mods["G_ema"] if "G_ema" in mods else mods["G"]


def get_objective(name: str) -> type[Objective]:
    """The objective class registered under ``name``; ``ValueError`` listing the known names otherwise."""
    if name not in OBJECTIVES:
        raise ValueError(f"no training objective {name!r} (known: {', '.join(sorted(OBJECTIVES))})")
    module, cls = OBJECTIVES[name].split(":")
    return getattr(importlib.import_module(module), cls)
