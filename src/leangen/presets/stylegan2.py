"""Presets of StyleGAN2 (model types in ``leangen.models.stylegan2``)."""
from __future__ import annotations

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
