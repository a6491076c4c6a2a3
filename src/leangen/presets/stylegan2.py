"""Presets of StyleGAN2 (model types in ``leangen.models.stylegan2``)."""
from __future__ import annotations

from typing import Any

from leangen.presets.base import Preset, register_preset
from leangen.presets.recipes import GAN_RECIPE, GAN_RECIPE_TINY


def register() -> None:
    """Register this family's presets (called once by ``leangen.presets.load_all``)."""
    paper = {256: dict(params_m=30.03, gmacs=83.77, throughput=44.133, throughput_unit="im/s",
                       gmacs_convention="upsampling convs at output resolution",
                       source="PixelFolder (ECCV 2022) Table 1"),
             512: dict(params_m=30.28, source="PixelFolder Table B"),
             1024: dict(params_m=30.37, source="PixelFolder Table B")}
    for res in (256, 512, 1024):
        cfg = dict(resolution=res, channel_multiplier=2)
        register_preset(Preset(
            name=f"stylegan2-{res}", family="stylegan2", task="unconditional", resolution=res, objective="gan",
            components={"G": ("stylegan2-generator", cfg), "D": ("stylegan2-discriminator", cfg)},
            training={"batch": 64 if res == 256 else 32, **GAN_RECIPE}, paper=paper[res],
            description=f"StyleGAN2 config F, channel multiplier 2, {res}x{res} (reference configuration)"))
        register_compression_stages(f"stylegan2-{res}", cfg, res, batch=32, ema_kimg=10.0)
    # Tiny CPU presets: every width divided by 8 (64 at 4..32 px), 4 mapping layers, z/w 128.
    for res in (32, 64):
        cfg = dict(resolution=res, z_dim=128, w_dim=128, mapping_layers=4, channel_multiplier=2, channel_base=64,
                   max_channels=64)
        dcfg = dict(resolution=res, channel_multiplier=2, channel_base=64, max_channels=64)
        register_preset(Preset(
            name=f"stylegan2-tiny{res}", family="stylegan2", task="unconditional", resolution=res, objective="gan",
            components={"G": ("stylegan2-generator", cfg), "D": ("stylegan2-discriminator", dcfg)},
            training=dict(GAN_RECIPE_TINY, r1_gamma=0.05 if res == 32 else 0.1),
            description=f"small StyleGAN2 for CPU training at {res}x{res}"))
        # A student at half the tiny widths, distilled from a trained tiny teacher (``--hparam teacher=RUN``).
        register_preset(Preset(
            name=f"stylegan2-tiny{res}-student", family="stylegan2", task="unconditional", resolution=res,
            objective="distill",
            components={"G": ("stylegan2-generator", dict(cfg, channel_base=32, max_channels=32))},
            training=dict(batch=16, lr=0.002, ema_kimg=2.0, output_weight=1.0),
            description=f"half-width StyleGAN2 student for distillation from stylegan2-tiny{res} at {res}x{res}"))
        register_compression_stages(f"stylegan2-tiny{res}", cfg, res, batch=16, ema_kimg=2.0)


def register_compression_stages(base: str, cfg: dict[str, Any], res: int, batch: int, ema_kimg: float) -> None:
    """``<base>-condense`` and ``<base>-distill``: the stages ``leangen compress`` runs on a trained ``base``
    generator. Both learn from the frozen teacher on latents (output L1, constant noise) with Adam (0, 0.99) at
    0.002; the copy has a ``ChannelScale`` gate per width (``channel_gates``), which condensation drives to zero
    and the pruned student keeps. The student also matches the teacher's kept gate outputs (``feature_weight``)."""
    components = {"G": ("stylegan2-generator", dict(cfg, channel_gates=True))}
    common: dict[str, Any] = dict(family="stylegan2", task="unconditional", resolution=res, components=components)
    register_preset(Preset(
        name=f"{base}-condense", objective="condense_distill",
        training=dict(batch=batch, lr=0.002, output_weight=1.0, sparsity=1.0, sparsity_ramp=100),
        description=f"compression step 1 for {base}: sparsify per-channel gates while matching the teacher "
                    f"(--hparam init=TEACHER --hparam teacher=TEACHER)", **common))
    register_preset(Preset(
        name=f"{base}-distill", objective="distill",
        training=dict(batch=batch, lr=0.002, output_weight=1.0, feature_weight=1.0, ema_kimg=ema_kimg),
        description=f"compression step 3 for {base}: a pruned student from the frozen condensed teacher "
                    f"(--hparam teacher=RUN --hparam init=PRUNED)", **common))
