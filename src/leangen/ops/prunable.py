"""What a channel-prunable model declares, and the preset triple every compressible translator registers.

A prunable model has a ``channels`` constructor argument (one width per prunable layer), a ``widths`` attribute (its
current values) and a ``channel_groups()`` method returning one ``ChannelGroup`` per entry of that list: the
normalization layers whose per-channel scale and shift (γ, β) score the group's channels, and every
``(parameter name, dim[, offset])`` the width sizes (ResNet, U-Net and ASAP-Net generators implement it). The pruner
(``leangen.compress.prune``) is generic over this declaration; it never looks at the architecture itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from leangen.registry import Preset


#: A tensor dimension a width sizes: ``(state-dict name, dim)``, or ``(name, dim, offset)`` when the width is one
#: segment ``offset .. offset + width`` of a concatenated input (a U-Net decoder reading skip + upsampled features).
Slice = tuple[str, int] | tuple[str, int, int]


@dataclass(frozen=True)
class ChannelGroup:
    """Width ``index`` of a model's ``channels`` list. ``norms``: module names of the affine norms producing it
    (γ ``{norm}.weight``, β ``{norm}.bias``); ``slices``: every tensor dimension (``Slice``) that this width sizes,
    norm statistics (``running_mean``/``running_var``) included."""

    index: int
    norms: list[str]
    slices: list[Slice] = field(default_factory=list)


def default_widths(ngf: int, n_down: int) -> list[int]:
    """``[ngf, 2 ngf, ..., 2**n_down ngf]``: the stem and downsampling widths of pix2pix-style encoders."""
    return [ngf * 2 ** i for i in range(n_down + 1)]


#: Training defaults of the tiny CPU translator presets: batch 16, GAN + L1 as pix2pix but with a lighter L1 weight
#: (10 on [-1, 1] images) and a higher learning rate for runs of a few hundred steps; no EMA (``G_ema`` = ``G``).
TINY_TRAINING: dict[str, Any] = dict(batch=16, gan_weight=1.0, l1_weight=10.0, fm_weight=0.0, lr=0.002,
                                     betas=[0.5, 0.999], ema_kimg=0.0, metrics=["psnr"])
#: pix2pix's recipe at 256: Adam 2e-4, betas (0.5, 0.999), batch 1, λ_L1 = 100 on [0, 1] images (50 on [-1, 1]).
PAPER_TRAINING: dict[str, Any] = dict(batch=1, gan_weight=1.0, l1_weight=50.0, fm_weight=0.0, lr=0.0002,
                                      betas=[0.5, 0.999], gan_loss="nonsat", ema_kimg=0.0, metrics=["psnr"])


def with_affine_norms(model_type: str, config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with ``norm_affine=True`` when ``model_type``'s constructor has that switch (ResNet and U-Net
    generators: their InstanceNorms carry no (γ, β) by default, and condensation needs one per channel); unchanged
    for models whose norms are always affine (ASAP-Net), which do not take the argument."""
    import inspect

    from leangen.models.base import MODEL_TYPES

    takes = "norm_affine" in inspect.signature(MODEL_TYPES[model_type]).parameters  # follows functools.wraps
    return dict(config, norm_affine=True) if takes else dict(config)


#: Hyper-parameters of the paired GAN recipes that the distill objective does not take. ``betas`` goes too: the
#: student keeps distillation's own Adam (0, 0.99) rather than a GAN recipe's.
_NOT_DISTILL = ("l1_weight", "fm_weight", "gan_loss", "betas", "g_lr", "d_lr", "perceptual_weight", "perceptual_net",
                "perceptual_weights")


def register_compression_presets(base: "Preset") -> None:
    """Register the two compression stages built on preset ``base`` (a ``leangen.registry.Preset`` of a prunable
    translator ``G``): ``<name>-condense`` (objective ``condense``: affine norms + sparsity penalty, ``base``'s
    training) and ``<name>-distill`` (objective ``distill``: a pruned student, widths given as ``--override
    G.channels=[...]``, from a frozen teacher). Components are ``base``'s, with affine norms (``with_affine_norms``)."""
    from leangen.registry import Preset, register_preset

    model_type, g_kwargs = base.components["G"]
    components = dict(base.components, G=(model_type, with_affine_norms(model_type, g_kwargs)))
    common: dict[str, Any] = dict(family=base.family, task=base.task, resolution=base.resolution)
    register_preset(Preset(name=f"{base.name}-condense", objective="condense", components=components,
                           training=dict(base.training),
                           description=f"compression step 1 for {base.name}: sparsify the norm scales "
                                       f"(--hparam init=TEACHER_RUN)", **common))
    distill = {k: v for k, v in base.training.items() if k not in _NOT_DISTILL}
    distill.update(gan_weight=0.0, output_weight=1.0, feature_weight=1.0)
    register_preset(Preset(name=f"{base.name}-distill", objective="distill", components=components, training=distill,
                           description=f"compression step 3 for {base.name}: a pruned student from a frozen "
                                       f"condensed teacher (--hparam teacher=RUN --hparam init=PRUNED)", **common))


def register_translator_presets(name: str, model_type: str, kwargs: dict[str, Any], *, tiny: bool = False,
                                paper: dict[str, Any] | None = None, description: str = "",
                                prunable: bool = True) -> None:
    """Register ``name`` (objective ``paired_gan``, a PatchGAN ``D``) and, for ``prunable`` models, its two
    compression stages (``register_compression_presets``)."""
    from leangen.registry import Preset, register_preset

    res = int(kwargs["resolution"])
    d_kwargs = dict(num_classes=kwargs.get("num_classes", 9), width=16 if tiny else 64)
    components = {"G": (model_type, dict(kwargs)), "D": ("patch-discriminator", d_kwargs)}
    training = dict(TINY_TRAINING if tiny else PAPER_TRAINING)
    base = register_preset(Preset(name=name, objective="paired_gan", components=components, training=training,
                                  paper=paper or {}, description=description, family=model_type, task="paired",
                                  resolution=res))
    if prunable:
        register_compression_presets(base)
