"""Presets of pix2pixHD-style global generators (model types in ``leangen.models.pix2pixhd``)."""
from __future__ import annotations

from leangen.presets.translators import register_label_map_family


def register() -> None:
    """Register this family's presets (called once by ``leangen.presets.load_all``)."""
    register_label_map_family("pix2pixhd", "pix2pixhd-global",
                    lambda k, h, aspect, edge: dict(num_classes=k, resolution=h, aspect=aspect, instance_edge=edge),
                    tiny=dict(ngf=8, n_down=2, n_blocks=2), describe="pix2pixHD-style global generator (ngf 64)")
