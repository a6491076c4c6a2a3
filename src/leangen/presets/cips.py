"""Presets of CIPS (model types in ``leangen.models.cips``)."""
from __future__ import annotations

from leangen.presets.base import Preset, register_preset
from leangen.presets.recipes import GAN_RECIPE, GAN_RECIPE_TINY


def register() -> None:
    """Register this family's presets (called once by ``leangen.presets.load_all``)."""
    # Official CIPS train.py: GAN_RECIPE at batch 32 (8 GPUs x 4).
    paper_training = {"batch": 32, **GAN_RECIPE}
    paper = {
        256: dict(params_m=44.32, gmacs=223.36, throughput=11.005, throughput_unit="im/s",
                  source="PixelFolder (ECCV 2022) Table 1"),
        512: dict(params_m=145.12, source="PixelFolder (ECCV 2022) Table B"),
        1024: dict(params_m=574.32, source="PixelFolder (ECCV 2022) Table B",
                   note="our build of the official CIPSskip code has 547.85M parameters at 1024 (544.6M of them "
                        "the 512x1024x1024 embedding); the table's 574.32 looks like a digit swap"),
    }
    for res in (256, 512, 1024):
        cfg = dict(resolution=res)
        register_preset(Preset(
            name=f"cips-{res}", family="cips", task="unconditional", resolution=res, objective="gan",
            components={"G": ("cips-generator", cfg), "D": ("stylegan2-discriminator", dict(resolution=res))},
            training=dict(paper_training), paper=paper[res],
            description=f"CIPS-skip, per-pixel MLP with learned coordinate embedding, {res}x{res} (reference configuration)"))
    # Tiny CPU preset: widths / 8 (64), 64-channel Fourier features and embedding, 4 mapping layers, z/w 128.
    cfg = dict(resolution=32, z_dim=128, w_dim=128, mapping_layers=4, hidden_size=64, channel_base=64,
               max_channels=64)
    register_preset(Preset(
        name="cips-tiny32", family="cips", task="unconditional", resolution=32, objective="gan",
        components={"G": ("cips-generator", cfg),
                    "D": ("stylegan2-discriminator", dict(resolution=32, channel_base=64, max_channels=64))},
        training=dict(GAN_RECIPE_TINY, r1_gamma=0.05),
        description="small CIPS-skip for CPU training at 32x32"))
