"""The contract between the training loop and what it trains.

The loop (``leangen.train.loop``) owns everything that is the same for every model: devices, AMP, distributed
processes, the data stream, EMA, step/kimg counting, ticks, logging, sample grids, snapshots and resume. A *task*
(``leangen.tasks``) owns the data: splits, the batch record, preview inputs. An *objective* owns what differs in
training: which networks exist and in which role, their optimizers and the losses of one step. It is looked up by
the preset's ``objective`` field (``OBJECTIVES`` below).

Life cycle, as the loop drives it::

    obj = ObjectiveClass()
    obj.build(preset, runtime, options)          # networks (seeded identically on every rank), optimizers
    [loop loads a snapshot into the trained/EMA modules, the optimizers, obj.load_state_dict(...)]
    for step in ...:
        stats = obj.train_step(batch, step)      # all phases of one step; grads synced through runtime
        [loop: EMA of obj.ema_pairs(), counters, logs]
    obj.preview(inputs)                          # images for the sample grids (None: too slow to sample)
    obj.eval_model()                             # the module users load and metrics evaluate (``entry``)

Module roles: ``trained`` (optimized, saved at every snapshot), ``ema`` (an EMA of a trained module, saved) and
``frozen`` (a reference loaded from a path, e.g. a distillation teacher: snapshots record its path and checksum
instead of rewriting it, and resume loads it from there again).
"""
from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

import torch
from torch import nn

from leangen.utils.registry import Registry

if TYPE_CHECKING:
    from leangen.data.batch import Batch
    from leangen.presets import Preset
    from leangen.train.runtime import Runtime
    from leangen.train.options import TrainOptions

# objective name (the preset's ``objective`` field) -> class, each imported only when first looked up.
OBJECTIVES: Registry = Registry("training objective")
for _name, _target in {"gan": "leangen.train.gan:GANObjective",
                       "likelihood": "leangen.train.likelihood:LikelihoodObjective",
                       "paired_gan": "leangen.train.paired:PairedGANObjective",
                       "distill": "leangen.train.distill:DistillObjective",
                       "condense": "leangen.train.condense:CondenseObjective",
                       "condense_distill": "leangen.train.condense:GeneratorCondenseObjective",
                       "cyclegan": "leangen.train.cyclegan:CycleGANObjective"}.items():
    OBJECTIVES.register_lazy(_name, _target)
ROLES = ("trained", "ema", "frozen")


def build_component(preset: "Preset", role: str, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> nn.Module:
    """``preset.build(role, **overrides[role])`` (the one way to build a component; ``overrides`` by role)."""
    return preset.build(role, **dict((overrides or {}).get(role, {})))


class Objective(abc.ABC):
    """What the loop trains. Subclasses implement ``build``, ``modules``, ``optimizers``, ``train_step``,
    ``preview``.

    Class attributes:
        name: the objective's name (matches ``Preset.objective``).
        hparams: hyper-parameters and their defaults. The preset's ``training`` dict, ``--hparam KEY=VALUE`` and
            the resumed run override them; the resolved values arrive as ``options.hparams``. Unknown keys are an
            error.
        entry: the module users load (``leangen.load(run)``) and metrics evaluate.

    Methods (see each docstring):
        build(preset, runtime, options)  create networks and optimizers on ``runtime.device``.
        modules() -> {name: PretrainedModel}  every network, whatever its role.
        roles() -> {name: "trained" | "ema" | "frozen"}  default: EMA targets are "ema", ``frozen_sources()``
            are "frozen", the rest "trained".
        frozen_sources() -> {name: path}  where each frozen module was loaded from (recorded in snapshots).
        optimizers() -> {name: Optimizer}  their states go into ``training_state.pt``.
        ema_pairs() -> {target: source}  modules the loop keeps as an EMA of another (``{"G_ema": "G"}``).
        train_step(batch, step) -> {stat: scalar tensor}  one full step (all phases); ``batch`` is this rank's
            ``leangen.data.batch.Batch`` on the device (uint8 images: use ``batch.image_float`` for [-1, 1]);
            ``step`` counts optimizer steps from 0. Values are detached 0-dim tensors, kept on the device: the loop
            reads them once per tick (``leangen.train.stepstats``) and stops on a non-finite one; a step must not
            read device values itself (no ``.item()``), or the GPU waits for the host every step.
        state_dict() / load_state_dict(d)  extra state (running means...): tensors, numbers, strings, lists and
            dicts only, so ``torch.load(weights_only=True)`` reads it back.
        preview(inputs) -> images ``[N, 3, H, W]`` in [-1, 1] on the CPU for the task's preview inputs
            (``{"seeds": [...]}`` or ``{"batch": Batch}``), deterministic; None when sampling is too slow.
        eval_model() -> the ``entry`` module.
        metric_kwargs() -> extra arguments of ``calc_metrics`` (e.g. ``{"teacher": module}``).
    """

    name: ClassVar[str] = ""
    hparams: ClassVar[Mapping[str, Any]] = {}
    entry: ClassVar[str] = "G_ema"

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

    def frozen_sources(self) -> dict[str, str]:
        """``{module: path it was loaded from}`` for frozen reference modules (default: none)."""
        return {}

    def roles(self) -> dict[str, str]:
        """The role of every module: ``trained``, ``ema`` or ``frozen``."""
        ema, frozen = self.ema_pairs(), self.frozen_sources()
        return {name: "ema" if name in ema else "frozen" if name in frozen else "trained" for name in self.modules()}

    def metric_kwargs(self) -> dict[str, Any]:
        """Extra keyword arguments for ``calc_metrics`` (default: none)."""
        return {}

    def optimizer_step(self, opt: torch.optim.Optimizer, module: nn.Module, loss: torch.Tensor,
                       grad_clip: float = 0.0) -> None:
        """One update of ``module``: zero grads, backward, average gradients over ranks (``self.rt``), optionally
        clip the global norm, step."""
        rt = self.rt  # type: ignore[attr-defined]
        scaler = rt.grad_scaler(opt)
        opt.zero_grad(set_to_none=True)
        (loss if scaler is None else scaler.scale(loss)).backward()
        rt.reduce_grads(module)  # before unscaling: an inf on one rank reaches all, so all skip the step alike
        if scaler is not None:
            scaler.unscale_(opt)
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(module.parameters(), grad_clip)
        if scaler is None:
            opt.step()
        else:
            scaler.step(opt)
            scaler.update()

    @abc.abstractmethod
    def train_step(self, batch: "Batch", step: int) -> dict[str, torch.Tensor]:
        """Run one training step (every phase) and return detached scalar statistics."""

    def state_dict(self) -> dict[str, Any]:
        """Extra state beyond modules and optimizers (default: none)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""

    @abc.abstractmethod
    def preview(self, inputs: Mapping[str, Any]) -> torch.Tensor | None:
        """Deterministic images for the preview inputs as float ``[N, 3, H, W]`` in [-1, 1] on the CPU, or None."""

    def eval_model(self) -> nn.Module:
        """The module users load and metrics evaluate: ``modules()[entry]``."""
        return self.modules()[self.entry]


class AdversarialModules:
    """Mixin for objectives with a trained ``G``, its EMA ``G_ema`` (the entry) and a trained ``D``, optimized by
    ``opt_G`` and ``opt_D``: the three accessors the loop reads."""

    def modules(self) -> dict[str, nn.Module]:
        return {"G_ema": self.G_ema, "G": self.G, "D": self.D}  # type: ignore[attr-defined]

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"G": self.opt_G, "D": self.opt_D}  # type: ignore[attr-defined]

    def ema_pairs(self) -> dict[str, str]:
        return {"G_ema": "G"}


def get_objective(name: str) -> type[Objective]:
    """The objective class registered under ``name``; ``UnknownName`` (a ``ValueError``) with close names otherwise."""
    return OBJECTIVES[name]
