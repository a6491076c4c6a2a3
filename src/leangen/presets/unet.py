"""Presets of U-Net translators (model types in ``leangen.models.unet_generator``)."""
from __future__ import annotations

from leangen.presets.translators import register_translator_presets


def register() -> None:
    """Register this family's presets (called once by ``leangen.presets.load_all``)."""
    register_translator_presets(
        "unet-256", "unet-generator", dict(num_classes=9, resolution=256, ngf=64, num_downs=8),
        paper={"source": "pix2pix unet_256 layout (BatchNorm); 54,413,955 parameters with 3-channel image input"},
        description="pix2pix U-Net generator (8 levels, BatchNorm, skip concatenation) at 256x256")
    register_translator_presets(
        "unet-tiny32", "unet-generator", dict(num_classes=9, resolution=32, ngf=8, num_downs=5, norm="instance"),
        tiny=True, description="U-Net generator (ngf 8, 5 levels, InstanceNorm) at 32x32 for CPU tests")
