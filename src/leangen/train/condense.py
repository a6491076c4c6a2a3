"""The condensation objectives: train a prunable model's copy that has per-channel (γ, β) (affine norms, or
``ChannelScale`` gates γ in a model without norms) with a group-lasso proximal step on them after every update of
``G``, on a ramped schedule (``leangen.ops.group_lasso`` has the design). The entry (what ``leangen.load`` returns)
is ``G`` itself: an EMA would blur the exact zeros the penalty produces.

- ``condense`` (translators): paired GAN training (``paired_gan``) plus the proximal step.
- ``condense_distill`` (generators, ``leangen compress`` on StyleGAN2): the copy learns to reproduce its frozen
  teacher on the same latents (the ``distill`` objective's output L1, constant noise) while the penalty removes
  channels, so condensation keeps the teacher's function rather than re-running an adversarial game from it.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

import torch
from torch import nn

from leangen.models.pretrained import model_label
from leangen.ops.group_lasso import proximal_step
from leangen.train.distill import DistillObjective
from leangen.train.paired import PairedGANObjective

if TYPE_CHECKING:
    from leangen.presets import Preset
    from leangen.train.options import TrainOptions
    from leangen.train.runtime import Runtime


class _GroupLassoStep:
    """The ramped proximal step on ``G`` shared by both objectives (mixed in before the objective it extends)."""

    G: nn.Module
    sparsity: float = 0.0
    ramp: int = 1
    g_lr: float = 0.0
    step: int = 0

    def _start_sparsity(self, hp: Mapping[str, Any], lr: float) -> None:
        if not getattr(self.G, "prunable", False):
            raise ValueError(f"{type(self.G).__name__} declares no prunable channels (channel_groups)")
        self.sparsity, self.ramp = float(hp["sparsity"]), max(int(hp["sparsity_ramp"]), 1)
        self.g_lr, self.step = float(lr), 0

    def _lambda(self, step: int) -> float:
        return self.sparsity * min(1.0, (step + 1) / self.ramp)

    def train_step(self, batch: Any, step: int) -> dict[str, torch.Tensor]:
        self.step = step
        stats = super().train_step(batch, step)  # type: ignore[misc]
        stats["sparsity"] = torch.tensor(self._lambda(step))
        return stats

    def optimizer_step(self, opt: torch.optim.Optimizer, module: nn.Module, loss: torch.Tensor,
                       grad_clip: float = 0.0) -> None:
        super().optimizer_step(opt, module, loss, grad_clip)  # type: ignore[misc]
        if module is self.G:
            proximal_step(self.G, self.g_lr * self._lambda(self.step))


class CondenseObjective(_GroupLassoStep, PairedGANObjective):
    """Modules as ``paired_gan`` (``G``, ``G_ema``, ``D``); the entry is ``G``."""

    name: ClassVar[str] = "condense"
    entry: ClassVar[str] = "G"
    hparams: ClassVar[Mapping[str, Any]] = {
        **PairedGANObjective.hparams,
        "init": None,              # model to start from (run dir, snapshot or saved model): the trained teacher
        "sparsity": 1.0,           # λ of the group lasso on per-channel (γ, β); the proximal threshold is lr * λ
        "sparsity_ramp": 100,      # steps over which λ ramps linearly up to ``sparsity`` (1: full from the start)
    }

    def build(self, preset: "Preset", runtime: "Runtime", options: "TrainOptions") -> None:
        import leangen

        super().build(preset, runtime, options)
        hp = {**self.hparams, **options.hparams}
        self._start_sparsity(hp, hp["g_lr"] or hp["lr"])
        if hp["init"]:
            source = Path(hp["init"]).expanduser()
            _load_into(self.G, leangen.load(source, device=runtime.device), source)
            self.G_ema.load_state_dict(self.G.state_dict())
            try:  # continue the teacher run's discriminator too, when the source is a run or snapshot that has one
                self.D.load_state_dict(leangen.load(source, device=runtime.device, role="D").state_dict())
            except (FileNotFoundError, KeyError, ValueError, RuntimeError):
                pass


class GeneratorCondenseObjective(_GroupLassoStep, DistillObjective):
    """Modules as ``distill`` (``G``, ``G_ema``, frozen ``teacher``); ``G`` starts from ``init`` (the teacher's
    weights, its gates at identity) and is the entry."""

    name: ClassVar[str] = "condense_distill"
    entry: ClassVar[str] = "G"
    hparams: ClassVar[Mapping[str, Any]] = {
        **DistillObjective.hparams,
        "sparsity": 1.0,
        "sparsity_ramp": 100,
    }

    def build(self, preset: "Preset", runtime: "Runtime", options: "TrainOptions") -> None:
        import dataclasses

        import leangen

        hp = {**self.hparams, **options.hparams}
        # the teacher's weights go in below, tolerating the gates it lacks (distill's own init wants equal shapes)
        super().build(preset, runtime, dataclasses.replace(options, hparams={**options.hparams, "init": None}))
        self._start_sparsity(hp, hp["lr"])
        if hp["init"]:
            source = Path(hp["init"]).expanduser()
            _load_into(self.G, leangen.load(source, device=runtime.device), source)
            self.G_ema.load_state_dict(self.G.state_dict())


def _load_into(G: nn.Module, source_model: nn.Module, source: Path) -> None:
    """Copy a trained model's weights into ``G`` (its norms or gates may lack the γ, β: those start at 1, 0)."""
    if model_label(source_model) != model_label(G):
        raise ValueError(f"init {source} holds a {model_label(source_model)!r}, the preset trains a "
                         f"{model_label(G)!r}")
    state = G.state_dict()
    for k, v in source_model.state_dict().items():
        if k not in state or state[k].shape != v.shape:
            raise ValueError(f"init {source}: tensor {k!r} does not fit the model (shape {list(v.shape)}); "
                             f"was it trained with other widths?")
        state[k] = v
    G.load_state_dict(state)
