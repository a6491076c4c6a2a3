"""The paper settings every label map -> image family registers presets for, so ASAP-Net, pix2pixHD-style and
SPADE are compared on the same inputs: CMP Facades (13 labels, 512^2 and 1024^2) and Cityscapes (35 labels +
instance boundaries, 256x512 and 1024x2048). Not a model family; each family calls ``register_family``."""
from __future__ import annotations

from typing import Any, Callable

#: setting suffix -> (num_classes, height, width/height, instance edge input)
SETTINGS: dict[str, tuple[int, int, int, bool]] = {
    "facades-512": (13, 512, 1, False), "facades-1024": (13, 1024, 1, False),
    "cityscapes-256x512": (35, 256, 2, True), "cityscapes-1024x2048": (35, 1024, 2, True)}

#: The SPADE-codebase recipe ASAP-Net's official trainer uses: hinge + feature matching 10, Adam(0, 0.9) with TTUR
#: (G 1e-4, D 4e-4). L1 is off as there. The official VGG19 perceptual term (weight 10) is not part of leangen's
#: recipe: no VGG weights ship offline.
PAPER_TRAINING: dict[str, Any] = dict(batch=1, lr=0.0002, g_lr=0.0001, d_lr=0.0004, betas=[0.0, 0.9], gan_weight=1.0,
                                      l1_weight=0.0, fm_weight=10.0, ema_kimg=0.0, metrics=["psnr"])
#: Tiny CPU presets: L1 only by default (``--hparam gan_weight=1`` adds the multi-scale PatchGAN).
TINY_TRAINING: dict[str, Any] = dict(batch=16, lr=0.002, betas=[0.0, 0.9], gan_weight=0.0, l1_weight=1.0,
                                     ema_kimg=0.0, metrics=["psnr"])
TINY_D: dict[str, Any] = dict(width=16, layers=3, num_d=2)


def register_family(family: str, model_type: str, config: Callable[[int, int, int, bool], dict[str, Any]],
                    tiny: dict[str, Any], describe: str, paper: dict[str, dict[str, Any]] | None = None,
                    prunable: bool = False) -> None:
    """Register ``<family>-<setting>`` for every paper setting and ``<family>-tiny32`` (openmoji-seg classes).

    ``config(num_classes, height, aspect, instance_edge)`` gives the generator's constructor arguments; ``tiny`` the
    tiny preset's; ``paper`` optional reference figures per preset name. ``prunable`` (a generator implementing
    ``leangen.ops.prunable``): each preset also gets its ``-condense`` and ``-distill`` stages for ``leangen
    compress``.
    """
    from leangen.data.paired import OPENMOJI_SEG_CLASSES
    from leangen.ops.prunable import register_compression_presets
    from leangen.registry import Preset, register_preset

    def register(preset: Preset) -> None:
        register_preset(preset)
        if prunable:
            register_compression_presets(preset)

    for setting, (k, h, aspect, edge) in SETTINGS.items():
        name = f"{family}-{setting}"
        register(Preset(
            name=name, family=family, task="paired", resolution=h, objective="paired_gan",
            components={"G": (model_type, config(k, h, aspect, edge)),
                        "D": ("multiscale-discriminator", dict(num_classes=k, instance_edge=edge))},
            training=dict(PAPER_TRAINING), paper=dict((paper or {}).get(name, {})),
            description=f"{describe} {h}x{h * aspect}, {k} labels{' + instance edges' if edge else ''}"))
    k = len(OPENMOJI_SEG_CLASSES)
    register(Preset(
        name=f"{family}-tiny32", family=family, task="paired", resolution=32, objective="paired_gan",
        components={"G": (model_type, dict(num_classes=k, resolution=32, **tiny)),
                    "D": ("multiscale-discriminator", dict(num_classes=k, **TINY_D))},
        training=dict(TINY_TRAINING),
        description=f"tiny {describe} for CPU tests on openmoji-seg-32 (L1; --hparam gan_weight=1 adds the GAN)"))
