"""Preset builders shared by the image-translation families.

- ``register_translator_presets``: a pix2pix-style generator with a PatchGAN ``D`` (``TRANSLATOR_*`` recipes);
- ``register_label_map_family``: a label map -> image family on the paper settings that ASAP-Net, pix2pixHD-style and
  SPADE are compared on: CMP Facades (13 labels, 512^2 and 1024^2) and Cityscapes (35 labels + instance boundaries,
  256x512 and 1024x2048), plus a tiny openmoji-seg preset (``LABEL_MAP_*`` recipes);
- ``register_compression_presets``: the ``-condense`` and ``-distill`` stages of a prunable translator (``leangen
  compress``), with the affine norms condensation needs (``with_affine_norms``).
"""
from __future__ import annotations

from typing import Any, Callable

from leangen.data.paired import OPENMOJI_SEG_CLASSES
from leangen.presets.base import Preset, register_preset
from leangen.presets.recipes import LABEL_MAP_PAPER, LABEL_MAP_TINY, TRANSLATOR_PAPER, TRANSLATOR_TINY

#: setting suffix -> (num_classes, height, width/height, instance edge input)
SETTINGS: dict[str, tuple[int, int, int, bool]] = {
    "facades-512": (13, 512, 1, False), "facades-1024": (13, 1024, 1, False),
    "cityscapes-256x512": (35, 256, 2, True), "cityscapes-1024x2048": (35, 1024, 2, True)}
TINY_D: dict[str, Any] = dict(width=16, layers=3, num_d=2)  # the tiny presets' multi-scale PatchGAN


def with_affine_norms(model_type: str, config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with ``norm_affine=True`` when ``model_type``'s constructor has that switch (ResNet and U-Net
    generators: their InstanceNorms carry no (γ, β) by default, and condensation needs one per channel), or with
    ``channel_gates=True`` for a model without norms (StyleGAN2: a ``ChannelScale`` per width); unchanged for
    models whose norms are always affine (ASAP-Net), which take neither."""
    import inspect

    from leangen.models import MODEL_TYPES

    params = inspect.signature(MODEL_TYPES[model_type]).parameters  # follows functools.wraps
    switch = next((k for k in ("norm_affine", "channel_gates") if k in params), None)
    return dict(config, **{switch: True}) if switch else dict(config)


#: Hyper-parameters of the paired GAN recipes that the distill objective does not take. ``betas`` goes too: the
#: student keeps distillation's own Adam (0, 0.99) rather than a GAN recipe's.
_NOT_DISTILL = ("l1_weight", "fm_weight", "gan_loss", "betas", "g_lr", "d_lr", "perceptual_weight", "perceptual_net",
                "perceptual_weights")


def register_compression_presets(base: Preset) -> None:
    """Register the two compression stages built on preset ``base`` (a ``Preset`` of a prunable
    translator ``G``): ``<name>-condense`` (objective ``condense``: affine norms + sparsity penalty, ``base``'s
    training) and ``<name>-distill`` (objective ``distill``: a pruned student, widths given as ``--override
    G.channels=[...]``, from a frozen teacher). Components are ``base``'s, with affine norms (``with_affine_norms``)."""
    model_type, g_kwargs = base.components["G"]
    components = dict(base.components, G=(model_type, with_affine_norms(model_type, g_kwargs)))
    common: dict[str, Any] = dict(family=base.family, task=base.task, resolution=base.resolution)
    register_preset(Preset(name=f"{base.name}-condense", objective="condense", components=components,
                           training=dict(base.training),
                           description=f"compression step 1 for {base.name}: sparsify the norm scales "
                                       f"(--hparam init=TEACHER_RUN)", **common))
    distill = {k: v for k, v in base.training.items() if k not in _NOT_DISTILL}
    # recon_weight: the student also learns from the real images (at 30 FPS / 256², 2,500 steps: FID 123.1 with it,
    # 150.6 without, same widths and lr; 64² fid_pairs, 2026-12-05)
    # ema_kimg: the student shipped is an average of its weights over about the last 0.5k steps at batch 1 (the
    # base recipes keep none), which evens out the batch-1 gradient noise the validation FID otherwise sees (64²,
    # 2,500 steps: 71.6 with it, 75.2 without); ema_rampup: but never over more than the last fifth of the run, as
    # early on the average still holds the first steps after pruning (256², 1,000 steps: 76.5 with a 500-step
    # half-life, 57.4 without; 2026-12-06)
    distill.update(gan_weight=0.0, output_weight=1.0, feature_weight=1.0, recon_weight=10.0, ema_kimg=0.5,
                   ema_rampup=0.2)
    register_preset(Preset(name=f"{base.name}-distill", objective="distill", components=components, training=distill,
                           description=f"compression step 3 for {base.name}: a pruned student from a frozen "
                                       f"condensed teacher (--hparam teacher=RUN --hparam init=PRUNED)", **common))


def register_translator_presets(name: str, model_type: str, kwargs: dict[str, Any], *, tiny: bool = False,
                                paper: dict[str, Any] | None = None, description: str = "",
                                prunable: bool = True) -> None:
    """Register ``name`` (objective ``paired_gan``, a PatchGAN ``D``) and, for ``prunable`` models, its two
    compression stages (``register_compression_presets``)."""
    res = int(kwargs["resolution"])
    d_kwargs = dict(num_classes=kwargs.get("num_classes", 9), width=16 if tiny else 64)
    components = {"G": (model_type, dict(kwargs)), "D": ("patch-discriminator", d_kwargs)}
    training = dict(TRANSLATOR_TINY if tiny else TRANSLATOR_PAPER)
    base = register_preset(Preset(name=name, objective="paired_gan", components=components, training=training,
                                  paper=paper or {}, description=description, family=model_type, task="paired",
                                  resolution=res))
    if prunable:
        register_compression_presets(base)


def register_label_map_family(family: str, model_type: str, config: Callable[[int, int, int, bool], dict[str, Any]],
                    tiny: dict[str, Any], describe: str, paper: dict[str, dict[str, Any]] | None = None,
                    prunable: bool = False) -> None:
    """Register ``<family>-<setting>`` for every paper setting and ``<family>-tiny32`` (openmoji-seg classes).

    ``config(num_classes, height, aspect, instance_edge)`` gives the generator's constructor arguments; ``tiny`` the
    tiny preset's; ``paper`` optional reference figures per preset name. ``prunable`` (a generator implementing
    ``leangen.ops.prunable``): each preset also gets its ``-condense`` and ``-distill`` stages for ``leangen
    compress``.
    """
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
            training=dict(LABEL_MAP_PAPER), paper=dict((paper or {}).get(name, {})),
            description=f"{describe} {h}x{h * aspect}, {k} labels{' + instance edges' if edge else ''}"))
    k = len(OPENMOJI_SEG_CLASSES)
    register(Preset(
        name=f"{family}-tiny32", family=family, task="paired", resolution=32, objective="paired_gan",
        components={"G": (model_type, dict(num_classes=k, resolution=32, **tiny)),
                    "D": ("multiscale-discriminator", dict(num_classes=k, **TINY_D))},
        training=dict(LABEL_MAP_TINY),
        description=f"tiny {describe} for CPU tests on openmoji-seg-32 (L1; --hparam gan_weight=1 adds the GAN)"))
