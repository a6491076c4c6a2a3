"""The paired objective: a translator (label map -> image) trained with L1 to the target plus, optionally, a
conditional GAN (hinge loss on a PatchGAN, feature matching), as pix2pix/pix2pixHD/SPADE do.

``gan_weight=0`` gives the plain L1 regression baseline (the discriminator is then never run). When the batch carries
instance maps (``Batch.instances``), G and D both get them (``instances=``) when they take that input (ASAP-Net,
pix2pixHD-style, SPADE, the multi-scale discriminator); models built with ``instance_edge`` feed the boundary map in
as one more channel.
"""
from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

import torch
from torch import nn

from leangen.train.losses import adam, d_loss, feature_matching, g_loss
from leangen.train.objective import AdversarialModules, Objective, build_component

if TYPE_CHECKING:
    from leangen.data.batch import Batch
    from leangen.models.base import PretrainedModel
    from leangen.presets import Preset
    from leangen.train.options import TrainOptions
    from leangen.train.runtime import Runtime


class PairedGANObjective(AdversarialModules, Objective):
    """Modules: ``G`` (translator, trained), ``G_ema`` (its EMA; the entry), ``D`` (trained when ``gan_weight > 0``).

    ``D(labels, image)`` returns ``(logits, features)``; ``logits`` may be a list (one map per scale of a
    multi-scale discriminator), whose losses are averaged over scales.
    """

    name: ClassVar[str] = "paired_gan"
    hparams: ClassVar[Mapping[str, Any]] = {
        "lr": 0.0002,              # Adam learning rate of G and D ...
        "g_lr": None,              # ... unless set per network (TTUR, as SPADE: 1e-4 / 4e-4)
        "d_lr": None,
        "betas": [0.0, 0.9],       # Adam betas (SPADE's with TTUR)
        "gan_loss": "hinge",       # hinge | nonsat
        "gan_weight": 1.0,         # 0: L1 regression only
        "l1_weight": 1.0,          # L1 to the target, in [-1, 1] units
        "fm_weight": 10.0,         # discriminator feature matching (pix2pixHD); only with gan_weight > 0
        "perceptual_weight": 0.0,  # L1 on frozen features (leangen.train.perceptual); 0: off
        "perceptual_net": "inception",  # inception (TF-Inception, offline) | vgg19 (needs perceptual_weights)
        "perceptual_weights": None,     # path of a torchvision-layout VGG19 state dict (perceptual_net=vgg19)
    }

    def build(self, preset: "Preset", runtime: "Runtime", options: "TrainOptions") -> None:
        from leangen.models.base import Translator

        hp = {**self.hparams, **options.hparams}
        self.rt = runtime
        G = build_component(preset, "G", options.overrides)
        if not isinstance(G, Translator):
            raise ValueError(f"the paired_gan objective trains Translator models; preset {preset.name!r} has a "
                             f"{type(G).__name__}")
        self.G = G.to(runtime.device).train()
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.D = build_component(preset, "D", options.overrides).to(runtime.device).train()
        self.gan_loss, self.gan_weight = str(hp["gan_loss"]), float(hp["gan_weight"])
        self.l1_weight, self.fm_weight = float(hp["l1_weight"]), float(hp["fm_weight"])
        self.perceptual_weight = float(hp["perceptual_weight"])
        self.perceptual = None
        if self.perceptual_weight > 0:
            from leangen.train.perceptual import build_perceptual

            self.perceptual = build_perceptual(str(hp["perceptual_net"]), hp["perceptual_weights"], runtime.device)
        d_loss(self.gan_loss, torch.zeros(1), torch.zeros(1))  # fail early on an unknown loss name
        lr, betas = float(hp["lr"]), tuple(float(b) for b in hp["betas"])
        self.opt_G = adam(self.G.parameters(), lr=float(hp["g_lr"] or lr), betas=betas)
        self.opt_D = adam(self.D.parameters(), lr=float(hp["d_lr"] or lr), betas=betas)

    def train_step(self, batch: "Batch", step: int) -> dict[str, torch.Tensor]:
        G, D, rt = self.G, self.D, self.rt
        labels, target = batch.condition, batch.image_float
        assert labels is not None
        inst_g, inst_d = _instance_kwargs(G, batch.instances), _instance_kwargs(D, batch.instances)
        adversarial = self.gan_weight > 0
        stats: dict[str, torch.Tensor] = {}

        # G: L1 to the target (+ fool D, + match D's features on the real pair).
        D.requires_grad_(False)
        with rt.autocast():
            fake = G(labels, **inst_g).float()
            l1 = (fake - target).abs().mean()
            loss = self.l1_weight * l1
            if self.perceptual is not None:
                perceptual = self.perceptual(fake, target)
                loss = loss + self.perceptual_weight * perceptual
                stats["perceptual"] = perceptual.detach()
            if adversarial:
                logits_fake, feats_fake = D(labels, fake, **inst_d)
                with torch.no_grad():
                    _, feats_real = D(labels, target, **inst_d)
                loss_adv = _over_scales(lambda lf: g_loss(self.gan_loss, lf.float()), logits_fake)
                fm = feature_matching(feats_fake, feats_real)
                loss = loss + self.gan_weight * loss_adv + self.fm_weight * fm
                stats["loss_G_adv"], stats["fm"] = loss_adv.detach(), fm.detach()
        self.optimizer_step(self.opt_G, G, loss)
        stats["l1"] = l1.detach()

        # D: real pairs up, translated pairs down.
        if adversarial:
            D.requires_grad_(True)
            with rt.autocast():
                logits_real, _ = D(labels, target, **inst_d)
                logits_fake, _ = D(labels, fake.detach(), **inst_d)
            loss_D = _over_scales(lambda lr, lf: d_loss(self.gan_loss, lr.float(), lf.float()), logits_real,
                                  logits_fake)
            self.optimizer_step(self.opt_D, D, loss_D)
            stats["loss_D"] = loss_D.detach()
        return stats

    @torch.no_grad()
    def preview(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        batch: "Batch" = inputs["batch"]
        inst = _instance_kwargs(self.G_ema, batch.instances)
        return self.G_ema.translate(batch.condition, output_type="pt", **inst)  # type: ignore[arg-type]


def _instance_kwargs(module: "PretrainedModel", instances: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """``{"instances": ids [B, H, W]}`` for a module that takes them (it declares ``takes_instances``; models built without
    edges accept and ignore them), else ``{}``: translators with ``forward(labels)`` only keep working."""
    return {"instances": instances} if instances is not None and module.takes_instances else {}


def _over_scales(loss: Any, *logits: Any) -> torch.Tensor:
    """``loss(*logits)`` for one logit map, or its mean over scales when the discriminator returns lists."""
    if isinstance(logits[0], (list, tuple)):
        return torch.stack([loss(*per_scale) for per_scale in zip(*logits)]).mean()
    return loss(*logits)
