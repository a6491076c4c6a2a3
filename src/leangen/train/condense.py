"""The condensation objective: paired GAN training (``paired_gan``) of a prunable translator with affine norms, plus
a group-lasso proximal step on the norms' per-channel (γ, β) after every generator update, on a ramped schedule.
See ``leangen.ops.group_lasso`` for the design. The entry (what ``leangen.load`` returns) is ``G`` itself: an EMA
would blur the exact zeros the penalty produces.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

import torch
from torch import nn

from leangen.models.pretrained import model_label
from leangen.ops.group_lasso import proximal_step
from leangen.train.paired import PairedGANObjective

if TYPE_CHECKING:
    from leangen.presets import Preset
    from leangen.train.options import TrainOptions
    from leangen.train.runtime import Runtime


class CondenseObjective(PairedGANObjective):
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
        if not self.G.prunable:
            raise ValueError(f"{type(self.G).__name__} declares no prunable channels (channel_groups)")
        self.sparsity, self.ramp = float(hp["sparsity"]), max(int(hp["sparsity_ramp"]), 1)
        self.g_lr = float(hp["g_lr"] or hp["lr"])
        self.step = 0
        if hp["init"]:
            source = Path(hp["init"]).expanduser()
            _load_into(self.G, leangen.load(source, device=runtime.device), source)
            self.G_ema.load_state_dict(self.G.state_dict())
            try:  # continue the teacher run's discriminator too, when the source is a run or snapshot that has one
                self.D.load_state_dict(leangen.load(source, device=runtime.device, role="D").state_dict())
            except (FileNotFoundError, KeyError, ValueError, RuntimeError):
                pass

    def train_step(self, batch: Any, step: int) -> dict[str, torch.Tensor]:
        self.step = step
        stats = super().train_step(batch, step)
        stats["sparsity"] = torch.tensor(self._lambda(step))
        return stats

    def _lambda(self, step: int) -> float:
        return self.sparsity * min(1.0, (step + 1) / self.ramp)

    def optimizer_step(self, opt: torch.optim.Optimizer, module: nn.Module, loss: torch.Tensor,
                       grad_clip: float = 0.0) -> None:
        super().optimizer_step(opt, module, loss, grad_clip)
        if module is self.G:
            proximal_step(self.G, self.g_lr * self._lambda(self.step))


def _load_into(G: nn.Module, source_model: nn.Module, source: Path) -> None:
    """Copy a trained model's weights into ``G`` (its norms may lack the affine γ, β: those start at 1, 0)."""
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
