"""Presets of Subscale Pixel Networks (model types in ``leangen.models.spn``)."""
from __future__ import annotations

from leangen.presets.base import Preset, register_preset


def register() -> None:
    """Register this family's presets (called once by ``leangen.presets.load_all``)."""
    def add(name: str, res: int, desc: str, training: dict | None = None, **kw: object) -> None:
        register_preset(Preset(
            name=name, family="spn", task="likelihood", resolution=res, objective="likelihood",
            components={"model": ("spn", dict(resolution=res, **kw))},
            training=dict(batch=32, lr=0.001, grad_clip=1.0, metrics=["bpd"], **(training or {})),
            paper=SPN_PAPER.get(name, {}), description=desc))

    # Tiny CPU presets (seconds per step at 32², batch 8 on 2 cores): 32 channels, 2 blocks.
    tiny = dict(hidden=48, blocks=2, kernel=3, cond_hidden=32, cond_blocks=1, cond_kernel=3)
    add("spn-tiny-32", 32, "tiny SPN, 8-bit, S=4, all 16 slices (CPU tests)", subscale=4, **tiny)
    add("spn-tiny-32-5bit", 32, "tiny SPN, 5-bit, S=4, all 16 slices (CPU tests)", bits=5, subscale=4, **tiny)
    add("spn-tiny-32-first", 32, "tiny chain stage (a): slice 0 at 3 bits, S=4", bits=3, subscale=4,
        slices="first", **tiny)
    add("spn-tiny-32-upscale", 32, "tiny chain stage (b): slices 1..15 at 3 bits given slice 0, S=4", bits=3,
        subscale=4, slices="rest", **tiny)
    add("spn-tiny-32-logistic", 32, "tiny SPN, 8-bit, S=4, discretized logistic mixture (5 components, coupled "
        "channels) in place of the 256-way categorical (CPU tests)", subscale=4, likelihood="logistic_mixture",
        mixtures=5, **tiny)
    add("spn-tiny-32-depth", 32, "tiny chain stage (c): low 5 bits given the 3-bit image, S=4", bits=8,
        high_bits=3, subscale=4, **tiny)

    # Paper-like configurations (sizes are ours: the paper's appendix was not retrievable). Decoder 5x5 masked
    # convs, conditioning 3x3 convs; widths chosen so the ImageNet-64 SPN lands near the paper's ~150M parameters.
    big = dict(hidden=512, blocks=20, kernel=5, cond_hidden=512, cond_blocks=4, cond_kernel=3)
    mid = dict(hidden=256, blocks=12, kernel=5, cond_hidden=256, cond_blocks=8, cond_kernel=3)
    add("spn-imagenet32", 32, "SPN ImageNet 32², 8-bit, S=4 (paper-like; sizes ours)", subscale=4, **mid)
    add("spn-imagenet64", 64, "SPN ImageNet 64², 8-bit, S=4 (paper-like, ~150M params; sizes ours)",
        subscale=4, **big)
    add("spn-celebahq256-5bit", 256, "SPN CelebA-HQ 256², 5-bit, S=8, all slices (paper-like; sizes ours)",
        bits=5, subscale=8, **mid)
    add("spn-celebahq256-first", 256, "CelebA-HQ 256² chain stage (a): slice 0 (32²) at 3 bits, S=8", bits=3,
        subscale=8, slices="first", **mid)
    add("spn-celebahq256-upscale", 256, "CelebA-HQ 256² chain stage (b): slices 1..63 at 3 bits, S=8", bits=3,
        subscale=8, slices="rest", **mid)
    add("spn-celebahq256-depth", 256, "CelebA-HQ 256² chain stage (c): 3 -> 8 bits, S=8", bits=8, high_bits=3,
        subscale=8, **mid)


#: The paper's own figures, for benchmarks to print beside ours (reference notes §1.5).
SPN_PAPER: dict[str, dict[str, object]] = {
    "spn-imagenet64": {"bpd": 3.52, "params_m": 150, "source": "SPN paper via Sparse Transformer / VDVAE tables"},
    "spn-imagenet32": {"bpd": 3.85, "source": "secondary leaderboard listing (which SPN variant: unresolved)"},
    "spn-celebahq256-5bit": {"bpd": 0.61, "source": "SPN paper, as quoted by NVAE / LMConv"},
}
