"""Presets of PixelFolder (model types in ``leangen.models.pixelfolder``)."""
from __future__ import annotations

from leangen.presets.base import Preset, register_preset
from leangen.presets.recipes import GAN_RECIPE, GAN_RECIPE_TINY


def register() -> None:
    """Register this family's presets (called once by ``leangen.presets.load_all``)."""
    # Official train.py / train.sh: GAN_RECIPE at batch 64 (8 GPUs x 8).
    paper_training = {"batch": 64, **GAN_RECIPE}
    paper = {
        256: dict(params_m=20.84, gmacs=23.78, throughput=77.735, throughput_unit="im/s",
                  source="PixelFolder (ECCV 2022) Table 1"),
        512: dict(params_m=20.84, source="PixelFolder (ECCV 2022) Table B",
                  note="the official code builds 17.48M parameters at 512; the table repeats its 256 entry"),
        1024: dict(params_m=21.14, source="PixelFolder (ECCV 2022) Table B"),
    }
    for res in (256, 512, 1024):
        register_preset(Preset(
            name=f"pixelfolder-{res}", family="pixelfolder", task="unconditional", resolution=res, objective="gan",
            components={"G": ("pixelfolder-generator", dict(resolution=res)),
                        "D": ("stylegan2-discriminator", dict(resolution=res))},
            training=dict(paper_training), paper=paper[res],
            description=f"PixelFolder, multi-stage pixel folding, {res}x{res} (reference configuration)"))
    # Tiny CPU presets: widths / 8 (64), 4 mapping layers, z/w 128. Two stages at both sizes: 8 -> 32 (the official
    # formula would give a single stage at 32) and 16 -> 64.
    for res in (32, 64):
        cfg = dict(resolution=res, z_dim=128, w_dim=128, mapping_layers=4, channel_base=64, max_channels=64,
                   num_stages=2)
        register_preset(Preset(
            name=f"pixelfolder-tiny{res}", family="pixelfolder", task="unconditional", resolution=res,
            objective="gan",
            components={"G": ("pixelfolder-generator", cfg),
                        "D": ("stylegan2-discriminator", dict(resolution=res, channel_base=64, max_channels=64))},
            training=dict(GAN_RECIPE_TINY, r1_gamma=0.05 if res == 32 else 0.1),
            description=f"small PixelFolder for CPU training at {res}x{res} (2 stages)"))
