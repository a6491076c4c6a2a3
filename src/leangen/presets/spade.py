"""Presets of SPADE generators (model types in ``leangen.models.spade``)."""
from __future__ import annotations

from leangen.presets.translators import register_label_map_family


def register() -> None:
    """Register this family's presets (called once by ``leangen.presets.load_all``)."""
    register_label_map_family("spade", "spade-generator",
                    lambda k, h, aspect, edge: dict(num_classes=k, resolution=h, aspect=aspect, instance_edge=edge),
                    tiny=dict(nf=4, hidden=16, num_up=3), describe="SPADE generator (nf 64, no encoder)")
