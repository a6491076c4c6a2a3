"""The likelihood objective: minimise the exact negative log-likelihood (reported as bits/dim) of the data.

Works for any ``LikelihoodModel`` (``log_prob`` of uint8 images in nats). 8-bit data is reduced to the model's
bit depth first (``x >> (8 - bits)``), so a 3-bit model is trained on the 3 most significant bits.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

import torch
from torch import nn

from leangen.train.losses import adam
from leangen.train.objective import Objective, build_component

if TYPE_CHECKING:
    from leangen.data.batch import Batch
    from leangen.presets import Preset
    from leangen.train.runtime import Runtime
    from leangen.train.options import TrainOptions


def reduce_bits(images: torch.Tensor, bits: int) -> torch.Tensor:
    """uint8 0..255 -> the ``bits`` most significant bits, 0 .. 2**bits - 1."""
    return images if bits >= 8 else torch.bitwise_right_shift(images, 8 - bits)


class LikelihoodObjective(Objective):
    """Adam on ``-log p(x)``. Modules: ``model`` (trained; the entry). Stats: ``bpd``."""

    name: ClassVar[str] = "likelihood"
    entry: ClassVar[str] = "model"
    hparams: ClassVar[Mapping[str, Any]] = {
        "lr": 0.001,               # Adam learning rate
        "betas": [0.9, 0.999],     # Adam betas
        "weight_decay": 0.0,
        "grad_clip": 0.0,          # max global grad norm; 0 disables
    }

    def build(self, preset: "Preset", runtime: "Runtime", options: "TrainOptions") -> None:
        from leangen.models.base import LikelihoodModel

        hp = {**self.hparams, **options.hparams}
        self.rt = runtime
        model = build_component(preset, "model", options.overrides)
        if not isinstance(model, LikelihoodModel):
            raise ValueError(f"the likelihood objective trains LikelihoodModel models; preset {preset.name!r} has a "
                             f"{type(model).__name__}")
        self.model = model.to(runtime.device).train()
        self.opt = adam(self.model.parameters(), lr=float(hp["lr"]), betas=[float(b) for b in hp["betas"]],
                        weight_decay=float(hp["weight_decay"]))
        self.grad_clip = float(hp["grad_clip"])

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": self.opt}

    def train_step(self, batch: "Batch", step: int) -> dict[str, torch.Tensor]:
        x = reduce_bits(batch.image_uint8, self.model.bits)
        # A model may offer a cheaper unbiased training estimate (SPN: one random slice per image); bpd metrics
        # always use the exact ``log_prob``.
        loss_fn = self.model.training_log_prob
        with self.rt.autocast():
            nll = -loss_fn(x).float().mean()
        self.optimizer_step(self.opt, self.model, nll, self.grad_clip)
        bpd = nll.detach() / (x[0].numel() * math.log(2))
        return {"bpd": bpd}

    @torch.no_grad()
    def preview(self, inputs: Mapping[str, Any]) -> torch.Tensor | None:
        if not self.model.sampling_is_cheap:
            return None
        return self.model.generate(list(inputs["seeds"]), output_type="pt")
