"""Training recipes shared by several presets, each named once (family-specific overrides stay in the family module).

GAN presets start from ``GAN_RECIPE``; image translators (pix2pix-style, compressible) from ``TRANSLATOR_TINY`` /
``TRANSLATOR_PAPER``; label-map families compared on the SPADE settings from ``LABEL_MAP_TINY`` / ``LABEL_MAP_PAPER``;
CycleGAN from ``CYCLEGAN_TINY`` / ``CYCLEGAN_PAPER``.
"""
from __future__ import annotations

from typing import Any

#: GAN training recipe of every GAN preset, as in the official CIPS and PixelFolder training code: Adam 0.002 with
#: betas (0, 0.99), lazy R1 10 every 16 steps, no path-length regularization, no style mixing, G EMA over 10 kimg.
#: Presets add their batch (``{"batch": B, **GAN_RECIPE}``) and any overrides.
GAN_RECIPE: dict[str, Any] = dict(lr=0.002, betas=(0.0, 0.99), r1_gamma=10.0, r1_interval=16, pl_weight=0.0,
                                  pl_interval=4, style_mixing=0.0, ema_kimg=10.0)
#: ``GAN_RECIPE`` for the tiny CPU presets: batch 16, a short EMA and DiffAugment (few images, few kimg). R1 is set
#: per resolution by each preset.
GAN_RECIPE_TINY: dict[str, Any] = {"batch": 16, **GAN_RECIPE, "ema_kimg": 2.0, "diffaugment": "color,translation"}

#: Training defaults of the tiny CPU translator presets: batch 16, GAN + L1 as pix2pix but with a lighter L1 weight
#: (10 on [-1, 1] images) and a higher learning rate for runs of a few hundred steps; no EMA (``G_ema`` = ``G``).
TRANSLATOR_TINY: dict[str, Any] = dict(batch=16, gan_weight=1.0, l1_weight=10.0, fm_weight=0.0, lr=0.002,
                                       betas=[0.5, 0.999], ema_kimg=0.0, metrics=["psnr"])
#: pix2pix's recipe at 256: Adam 2e-4, betas (0.5, 0.999), batch 1, λ_L1 = 100 on [0, 1] images (50 on [-1, 1]).
TRANSLATOR_PAPER: dict[str, Any] = dict(batch=1, gan_weight=1.0, l1_weight=50.0, fm_weight=0.0, lr=0.0002,
                                        betas=[0.5, 0.999], gan_loss="nonsat", ema_kimg=0.0, metrics=["psnr"])

#: The SPADE-codebase recipe ASAP-Net's official trainer uses: hinge + feature matching 10, Adam(0, 0.9) with TTUR
#: (G 1e-4, D 4e-4). L1 is off as there. The official VGG19 perceptual term (weight 10) is not part of leangen's
#: recipe: no VGG weights ship offline.
LABEL_MAP_PAPER: dict[str, Any] = dict(batch=1, lr=0.0002, g_lr=0.0001, d_lr=0.0004, betas=[0.0, 0.9], gan_weight=1.0,
                                       l1_weight=0.0, fm_weight=10.0, ema_kimg=0.0, metrics=["psnr"])
#: Tiny CPU label-map presets: L1 only by default (``--hparam gan_weight=1`` adds the multi-scale PatchGAN).
LABEL_MAP_TINY: dict[str, Any] = dict(batch=16, lr=0.002, betas=[0.0, 0.9], gan_weight=0.0, l1_weight=1.0,
                                      ema_kimg=0.0, metrics=["psnr"])

#: CycleGAN's recipe (Zhu et al. 2017, official code): LSGAN, λ_cycle 10 per direction, identity 0.5 λ, pools of 50
#: fakes, Adam 2e-4 (0.5, 0.999), batch 1, flips; 100 epochs at a constant rate then 100 decaying linearly to 0. An
#: epoch is counted as horse2zebra's (max(1067, 1334) = 1334 images): 133.4 kimg + 133.4 kimg.
CYCLEGAN_PAPER: dict[str, Any] = dict(batch=1, lr=0.0002, betas=[0.5, 0.999], gan_loss="lsgan", lambda_A=10.0,
                                      lambda_B=10.0, lambda_identity=0.5, pool_size=50, lr_decay_start_kimg=133.4,
                                      lr_decay_kimg=133.4, kimg=266.8, mirror=True, ema_kimg=0.0, metrics=[])
#: The tiny CPU preset: the same losses, batch 4 and a 5x higher rate for runs of a few hundred steps.
CYCLEGAN_TINY: dict[str, Any] = dict(CYCLEGAN_PAPER, batch=4, lr=0.001, lr_decay_start_kimg=None, lr_decay_kimg=None,
                                     kimg=None, mirror=False)
