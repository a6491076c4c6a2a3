"""Presets of ASAP-Net (model types in ``leangen.models.asapnet``)."""
from __future__ import annotations

from leangen.models.asapnet import REFERENCE
from leangen.presets.translators import register_label_map_family


def register() -> None:
    """Register this family's presets (called once by ``leangen.presets.load_all``)."""
    paper = {"asapnet-facades-512": (82_007_363, 26.07, 0.593), "asapnet-facades-1024": (82_269_763, 37.91, 1.471),
             "asapnet-cityscapes-256x512": (83_201_411, 48.88, 0.507)}
    register_label_map_family(
        "asapnet", "asapnet",
        lambda k, h, aspect, edge: dict(num_classes=k, resolution=h, aspect=aspect, instance_edge=edge,
                                        reflection_pad=not edge),  # facades scripts: reflection; cityscapes: zeros
        # S=8 (S1=2, S2=4): a 4x4 grid of 16-wide MLPs; init gain 1 so a random model's output is not flat
        tiny=dict(downsampling=8, learned_ds=4, lr_width=16, lr_max_width=64, lr_depth=2, hr_width=16, init_gain=1.0),
        describe="ASAP-Net (official configuration, tile S = height/16)",
        paper={n: {"params": p, "params_m": p / 1e6, "gmacs": g, "cpu_latency_s_official": t, "source": REFERENCE}
               for n, (p, g, t) in paper.items()},
        prunable=True)  # channels / channel_groups: leangen compress works on every ASAP-Net preset
