"""Presets of the small conv translator (model types in ``leangen.models.conv_translator``)."""
from __future__ import annotations

from leangen.presets.base import Preset, register_preset


def register() -> None:
    """Register this family's presets (called once by ``leangen.presets.load_all``)."""
    for res in (32, 64):
        register_preset(Preset(
            name=f"conv-translator-tiny{res}", family="conv-translator", task="paired", resolution=res,
            objective="paired_gan",
            components={"G": ("conv-translator", dict(num_classes=9, resolution=res, width=16)),
                        "D": ("patch-discriminator", dict(num_classes=9, width=16))},
            training=dict(batch=16, gan_weight=0.0, l1_weight=1.0, lr=0.002, ema_kimg=0.0, metrics=["psnr"]),
            description=f"small encoder-decoder label map -> image at {res}x{res}, L1 only by default "
                        f"(--hparam gan_weight=1 adds the PatchGAN); trains on openmoji-seg"))
