"""The GAN objective shared by every style-based generator in leangen (StyleGAN2, CIPS, PixelFolder).

StyleGAN2's recipe, written from the papers (Karras et al. 2020; Zhao et al. 2020 for DiffAugment):

- non-saturating logistic loss: ``L_G = softplus(-D(G(z)))``, ``L_D = softplus(D(G(z))) + softplus(-D(x))``;
- lazy R1 on reals every ``r1_interval`` steps: ``r1_gamma / 2 * |grad_x D(x)|^2``, scaled by the interval so
  its average strength is unchanged;
- optional path-length regularization every ``pl_interval`` steps (on ``batch / pl_batch_shrink`` samples,
  running mean with decay ``pl_decay``);
- optional style mixing: with probability ``style_mixing`` the layers from a random cutoff on take the w of a
  second latent;
- Adam with lazy-regularization scaling: ``lr * c`` and ``betas ** c`` with ``c = interval / (interval + 1)``
  (G uses ``pl_interval``, D ``r1_interval``), since each regularized step takes one more optimizer step;
- ``G.map(z, update_w_avg=True)`` in the generator phase keeps ``mapping.w_avg`` (truncation centre) current;
- optional DiffAugment on everything D sees;
- optional clipping of D's global gradient norm (``d_grad_clip``, StyleNAT's set-up);
- optional balanced consistency regularization (bCR, Zhao et al. 2021; StyleNAT/StyleSwin use 10 and 10), added to
  D's main loss: ``bcr_real * mean((D(x) - D(T(x)))^2) + bcr_fake * mean((D(G(z)) - D(T(G(z))))^2)`` with ``T`` the
  ``bcr_augment`` policy applied on top of what D already saw; gradients flow through both terms (as in the paper).
  Off by default, and when off it draws no random numbers, so runs without it are unchanged.

Only the ``StyleGenerator`` interface is used (``map``, ``synthesis``, ``num_ws``, ``z_dim``), never a family.
The losses and the lazy Adam live in ``leangen.train.losses`` (shared with the other adversarial objectives).
"""
from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

import torch
from torch import nn

from leangen.train.augment import DiffAugment
from leangen.train.losses import d_loss, g_loss, lazy_adam, r1_penalty
from leangen.train.objective import AdversarialModules, Objective, build_component

__all__ = ["GANObjective", "build_component", "lazy_adam"]

if TYPE_CHECKING:
    from leangen.data.batch import Batch
    from leangen.presets import Preset
    from leangen.train.runtime import Runtime
    from leangen.train.options import TrainOptions


class GANObjective(AdversarialModules, Objective):
    """Non-saturating GAN with lazy R1, optional path length, style mixing and DiffAugment. Modules: G, D, G_ema."""

    name: ClassVar[str] = "gan"
    hparams: ClassVar[Mapping[str, Any]] = {
        "lr": 0.002,                # Adam learning rate of G and D ...
        "g_lr": None,               # ... unless set per network (two time-scale update rule)
        "d_lr": None,
        "betas": [0.0, 0.99],       # Adam betas (before lazy-regularization scaling)
        "r1_gamma": 10.0,           # R1 weight; 0 disables
        "r1_interval": 16,          # lazy R1 every N steps
        "pl_weight": 0.0,           # path-length weight; 0 disables (StyleGAN2 config F: 2)
        "pl_interval": 4,           # lazy path length every N steps (also scales G's Adam)
        "pl_decay": 0.01,           # running mean decay of the path length
        "pl_batch_shrink": 2,       # path length on batch / N samples
        "style_mixing": 0.0,        # probability of mixing two latents
        "diffaugment": "none",      # DiffAugment policy: color,translation,cutout | none
        "d_grad_clip": 0.0,         # clip D's global gradient norm (StyleNAT/StyleSwin: 5.0); 0 disables
        "bcr_real": 0.0,            # bCR weight on reals (StyleNAT/StyleSwin: 10); 0 disables
        "bcr_fake": 0.0,            # bCR weight on fakes (StyleNAT/StyleSwin: 10); 0 disables
        "bcr_augment": "flip,translation",  # bCR's transform T, a DiffAugment policy (reference: all four)
    }

    # -- set-up ---------------------------------------------------------------------------------------------------
    def build(self, preset: "Preset", runtime: "Runtime", options: "TrainOptions") -> None:
        from leangen.models.base import StyleGenerator

        hp = {**self.hparams, **options.hparams}
        self.rt = runtime
        dev = runtime.device
        G = build_component(preset, "G", options.overrides)
        if not isinstance(G, StyleGenerator):
            raise ValueError(f"the gan objective trains StyleGenerator models; preset {preset.name!r} has a "
                             f"{type(G).__name__}")
        if "D" not in preset.components:
            raise ValueError(f"preset {preset.name!r} has no discriminator (component 'D')")
        D = build_component(preset, "D", options.overrides)
        self.G = G.to(dev).train()
        self.D = D.to(dev).train()
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.augment = DiffAugment(hp["diffaugment"]).to(dev)

        self.r1_gamma, self.r1_interval = float(hp["r1_gamma"]), max(1, int(hp["r1_interval"]))
        self.pl_weight, self.pl_interval = float(hp["pl_weight"]), max(1, int(hp["pl_interval"]))
        self.pl_decay, self.pl_batch_shrink = float(hp["pl_decay"]), max(1, int(hp["pl_batch_shrink"]))
        self.style_mixing = float(hp["style_mixing"])
        self.d_grad_clip = float(hp["d_grad_clip"])
        self.bcr_real, self.bcr_fake = float(hp["bcr_real"]), float(hp["bcr_fake"])
        self.cr_augment = DiffAugment(hp["bcr_augment"]).to(dev)
        if (self.bcr_real > 0 or self.bcr_fake > 0) and not self.cr_augment.policy:
            raise ValueError("bCR (bcr_real/bcr_fake > 0) needs a transform: set bcr_augment, e.g. 'flip,translation'")
        lr = float(hp["lr"])
        betas = [float(b) for b in hp["betas"]]
        self.opt_G = lazy_adam(self.G.parameters(), float(hp["g_lr"] or lr), betas, self.pl_interval)
        self.opt_D = lazy_adam(self.D.parameters(), float(hp["d_lr"] or lr), betas, self.r1_interval)
        self.pl_mean = torch.zeros([], device=dev)

    def state_dict(self) -> dict[str, Any]:
        # DiffAugment has no state of its own (its randomness is the global RNG, which the loop saves).
        return {"pl_mean": self.pl_mean.detach().cpu()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "pl_mean" in state:
            self.pl_mean.copy_(state["pl_mean"])

    # -- helpers --------------------------------------------------------------------------------------------------
    def _latents(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.G.z_dim, device=self.rt.device)

    def _ws(self, z: torch.Tensor, update_w_avg: bool = False) -> torch.Tensor:
        """Map ``z`` to ``ws``, mixing in a second latent from a random layer on with probability ``style_mixing``."""
        ws = self.G.map(z, update_w_avg=update_w_avg)
        num_ws = ws.shape[1]
        if self.style_mixing > 0 and num_ws > 1:
            # Decided on the device with torch.where (no host sync); the second mapping runs either way.
            cutoff = torch.randint(1, num_ws, (), device=z.device)
            cutoff = torch.where(torch.rand((), device=z.device) < self.style_mixing, cutoff,
                                 torch.full_like(cutoff, num_ws))
            ws2 = self.G.map(torch.randn_like(z))
            mix = torch.arange(num_ws, device=z.device).view(1, -1, 1) >= cutoff
            ws = torch.where(mix, ws2, ws)
        return ws

    def _bcr(self, seen_real: torch.Tensor, logits_real: torch.Tensor, seen_fake: torch.Tensor,
             logits_fake: torch.Tensor, stats: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """Balanced consistency loss for D's main step. Inputs: what D saw ``[B, 3, H, W]`` and its logits ``[B, 1]``.

        Returns None when bCR is off (no D calls, no random draws); else the weighted scalar loss (with graph), and
        records the unweighted MSE per side in ``stats`` as ``bcr_real`` / ``bcr_fake``."""
        loss: torch.Tensor | None = None
        for name, weight, seen, logits in (("bcr_real", self.bcr_real, seen_real, logits_real),
                                           ("bcr_fake", self.bcr_fake, seen_fake, logits_fake)):
            if weight <= 0:
                continue
            with self.rt.autocast():
                mse = (self.D(self.cr_augment(seen)).float() - logits).square().mean()
            stats[name] = mse.detach()
            loss = mse * weight if loss is None else loss + mse * weight
        return loss

    # -- one training step ------------------------------------------------------------------------------------------
    def train_step(self, batch: "Batch", step: int) -> dict[str, torch.Tensor]:
        G, D, rt = self.G, self.D, self.rt
        reals = batch.image_float
        n = reals.shape[0]
        stats: dict[str, torch.Tensor] = {}

        # G main: fool D. Only G's parameters need gradients.
        G.requires_grad_(True)
        D.requires_grad_(False)
        with rt.autocast():
            fake = G.synthesis(self._ws(self._latents(n), update_w_avg=True))
            logits = D(self.augment(fake)).float()
        loss_G = g_loss("nonsat", logits)
        self.optimizer_step(self.opt_G, G, loss_G)
        stats["loss_G"] = loss_G.detach()

        # G reg: path length, lazily. |J^T y| for random image-space y should be constant over w.
        if self.pl_weight > 0 and step % self.pl_interval == 0:
            m = max(1, n // self.pl_batch_shrink)
            with rt.autocast():
                ws = self._ws(self._latents(m))
                img = G.synthesis(ws).float()
            noise = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
            (grad,) = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
            lengths = grad.float().square().sum(2).mean(1).sqrt()
            # One running mean for all ranks, so every rank computes the same penalty target.
            batch_mean = rt.all_reduce_mean(lengths.mean().detach())
            self.pl_mean.copy_(self.pl_mean.lerp(batch_mean, self.pl_decay))
            penalty = (lengths - self.pl_mean).square().mean()
            self.optimizer_step(self.opt_G, G, penalty * self.pl_weight * self.pl_interval)
            stats["pl_penalty"] = penalty.detach()
            stats["pl_length"] = batch_mean

        # D main: reals up, fakes down. The generator runs without a graph.
        G.requires_grad_(False)
        D.requires_grad_(True)
        with torch.no_grad(), rt.autocast():
            fake = G.synthesis(self._ws(self._latents(n)))
        with rt.autocast():
            seen_fake = self.augment(fake)
            logits_fake = D(seen_fake).float()
            seen_real = self.augment(reals)
            logits_real = D(seen_real).float()
        loss_D = d_loss("nonsat", logits_real, logits_fake)
        bcr = self._bcr(seen_real, logits_real, seen_fake, logits_fake, stats)
        # loss_D stays the adversarial part in the stats (comparable with and without bCR); bCR has its own stats.
        self.optimizer_step(self.opt_D, D, loss_D if bcr is None else loss_D + bcr, grad_clip=self.d_grad_clip)
        stats["loss_D"] = loss_D.detach()
        stats["D_real"] = logits_real.detach().mean()
        stats["D_fake"] = logits_fake.detach().mean()

        # D reg: R1 on reals, lazily (gradient w.r.t. the un-augmented image, as in StyleGAN2-ADA).
        if self.r1_gamma > 0 and step % self.r1_interval == 0:
            real = reals.detach().requires_grad_(True)
            with rt.autocast():
                logits = D(self.augment(real)).float()
            penalty = r1_penalty(logits, real)
            self.optimizer_step(self.opt_D, D, penalty * (self.r1_gamma / 2) * self.r1_interval,
                                grad_clip=self.d_grad_clip)
            stats["r1_penalty"] = penalty.detach()
        G.requires_grad_(True)
        return stats

    # -- outputs ----------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def preview(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        return self.G_ema.generate(list(inputs["seeds"]), noise_mode="const", output_type="pt")
