"""Presets of the full-image AR decoder baselines (model types in ``leangen.models.ar_decoder``)."""
from __future__ import annotations

from leangen.presets.base import Preset, register_preset


def register() -> None:
    """Register this family's presets (called once by ``leangen.presets.load_all``)."""
    def add(name: str, res: int, desc: str, **kw: object) -> None:
        register_preset(Preset(
            name=name, family="ar-decoder", task="likelihood", resolution=res, objective="likelihood",
            components={"model": ("ar-decoder", dict(resolution=res, **kw))},
            training=dict(batch=32, lr=0.001, grad_clip=1.0, metrics=["bpd"]), description=desc))

    # Tiny baselines: width 48 like spn-tiny-32, one more block in place of its conditioning net: within 4% of its
    # parameters (108,384 vs 112,032 at 8 bits), as the equal-parameter bits/dim comparison asks.
    add("ar-tiny-32", 32, "tiny full-image masked-conv AR baseline, 8-bit (CPU tests)", hidden=48, blocks=3, kernel=3)
    add("ar-tiny-32-5bit", 32, "tiny full-image masked-conv AR baseline, 5-bit", bits=5, hidden=48, blocks=3,
        kernel=3)
    # Baselines with the decoder sizes of the paper-like SPN presets (same blocks, no slicing).
    add("ar-imagenet32", 32, "full-image AR baseline, 32², width/depth of spn-imagenet32", hidden=256, blocks=12,
        kernel=5)
    add("ar-imagenet64", 64, "full-image AR baseline, 64², width/depth of spn-imagenet64", hidden=512, blocks=20,
        kernel=5)
    add("ar-celebahq256-5bit", 256, "full-image AR baseline, 256² 5-bit, width/depth of spn-celebahq256-5bit",
        bits=5, hidden=256, blocks=12, kernel=5)
