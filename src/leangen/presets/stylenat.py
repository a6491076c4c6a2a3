"""Presets of StyleNAT (model types in ``leangen.models.stylenat``)."""
from __future__ import annotations

from leangen.presets.base import Preset, register_preset
from leangen.presets.recipes import GAN_RECIPE, GAN_RECIPE_TINY


def register() -> None:
    """Register this family's presets (called once by ``leangen.presets.load_all``)."""
    # StyleNAT's set-up (StyleSwin's): TTUR (D 2e-4, G = D / 4), R1 10 every 16, D gradient-norm clip 5, no path
    # length, no mixing, EMA half-life 10 kimg (0.5 ** (32 / 10000) per step of 32 images).
    recipe = dict(GAN_RECIPE, batch=32, g_lr=5e-5, d_lr=2e-4, d_grad_clip=5.0)
    src = "StyleNAT README (SHI-Labs/StyleNAT @ 8092724); GMACs: reference notes' analytic estimate"
    paper = {256: dict(params_m=48.92, fid=2.046, throughput=32.56, throughput_unit="im/s", gmacs=94.6,
                       gmacs_convention="analytic estimate 12*N*C^2 + 2*N*k^2*C per block", source=src),
             1024: dict(params_m=49.45, fid=4.174, source=src)}
    for res in (256, 1024):
        register_preset(Preset(
            name=f"stylenat-{res}", family="stylenat", task="unconditional", resolution=res, objective="gan",
            components={"G": ("stylenat-generator", dict(resolution=res)),
                        "D": ("stylegan2-discriminator", dict(resolution=res, channel_multiplier=2))},
            training=recipe, paper=paper[res],
            description=f"StyleNAT FFHQ-{res} configuration (Hydra-NA k=7, dilations 1 and R/8), StyleGAN2 D"))
    # The reference set-up's D: StyleSwin's wavelet discriminator with spectral norm, plus bCR (10, 10) with
    # CR_DiffAug's transforms (flip, colour, translation 1/8, cutout).
    bcr = dict(bcr_real=10.0, bcr_fake=10.0, bcr_augment="flip,color,translation,cutout")
    register_preset(Preset(
        name="stylenat-256-wavelet", family="stylenat", task="unconditional", resolution=256, objective="gan",
        components={"G": ("stylenat-generator", dict(resolution=256)),
                    "D": ("wavelet-discriminator", dict(resolution=256, channel_multiplier=2, spectral_norm=True))},
        training={**recipe, **bcr}, paper=paper[256],
        description="StyleNAT FFHQ-256 as in the reference set-up: wavelet D with spectral norm, bCR"))
    # Tiny CPU presets: widths <= 64, two heads, k=7 (k=3 at 8x8 would also do; 7 keeps the paper's kernel).
    tiny = {32: (64, 64, 64, 32), 64: (64, 64, 64, 32, 32)}
    for res, ch in tiny.items():
        cfg = dict(resolution=res, z_dim=128, w_dim=128, mapping_layers=4, channels=list(ch), min_heads=2)
        dcfg = dict(resolution=res, channel_multiplier=2, channel_base=64, max_channels=64)
        # The paper's 4:1 TTUR at 5x its rates, for runs of a few kimg (not tuned).
        training = dict(GAN_RECIPE_TINY, g_lr=2.5e-4, d_lr=1e-3, d_grad_clip=5.0, r1_gamma=0.05 if res == 32 else 0.1)
        register_preset(Preset(
            name=f"stylenat-tiny{res}", family="stylenat", task="unconditional", resolution=res, objective="gan",
            components={"G": ("stylenat-generator", cfg), "D": ("stylegan2-discriminator", dcfg)},
            training=training, description=f"small StyleNAT for CPU training at {res}x{res}"))
        if res == 32:
            wcfg = dict(resolution=res, channel_multiplier=2, channel_base=64, max_channels=64, spectral_norm=True)
            register_preset(Preset(
                name=f"stylenat-tiny{res}-wavelet", family="stylenat", task="unconditional", resolution=res,
                objective="gan", components={"G": ("stylenat-generator", cfg), "D": ("wavelet-discriminator", wcfg)},
                training={**training, **bcr},
                description=f"small StyleNAT at {res}x{res} with the wavelet D (spectral norm) and bCR"))
