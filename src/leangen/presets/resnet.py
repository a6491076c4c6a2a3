"""Presets of ResNet translators and CycleGAN (model types in ``leangen.models.resnet_generator``)."""
from __future__ import annotations

from typing import Any

from leangen.presets.base import Preset, register_preset
from leangen.presets.translators import register_translator_presets
from leangen.presets.recipes import CYCLEGAN_PAPER, CYCLEGAN_TINY


def register() -> None:
    """Register this family's presets (called once by ``leangen.presets.load_all``)."""
    paper: dict[str, Any] = {"source": "pix2pix/CycleGAN ResnetGenerator (GAN Compression README: 11.4M, 56.8G MACs "
                                       "at 256x256, 3-channel image input)", "params_m": 11.4, "gmacs": 56.8}
    register_translator_presets(
        "resnet9-256", "resnet-generator", dict(num_classes=9, resolution=256, ngf=64, n_blocks=9), paper=paper,
        description="pix2pix/CycleGAN ResNet-9 generator (IN, reflection padding, transposed convs) at 256x256")
    register_translator_presets(
        "resnet6-256", "resnet-generator", dict(num_classes=9, resolution=256, ngf=64, n_blocks=6),
        paper={"source": "pix2pix/CycleGAN resnet_6blocks"},
        description="pix2pix/CycleGAN ResNet-6 generator at 256x256")
    register_translator_presets(
        "resnet9-64", "resnet-generator", dict(num_classes=9, resolution=64, ngf=64, n_blocks=9),
        description="the full-width ResNet-9 at 64x64: compression quality runs (FID) a CPU can afford")
    register_translator_presets(
        "resnet-tiny32", "resnet-generator", dict(num_classes=9, resolution=32, ngf=8, n_blocks=3), tiny=True,
        description="ResNet generator (ngf 8, 3 blocks) at 32x32 for CPU tests; trains on openmoji-seg-32")
    _register_cyclegan_presets()


def _register_cyclegan_presets() -> None:
    def components(res: int, ngf: int, n_blocks: int, ndf: int, layers: int) -> dict[str, Any]:
        g = ("resnet-generator", dict(num_classes=0, resolution=res, ngf=ngf, n_blocks=n_blocks, in_channels=3))
        d = ("patch-discriminator", dict(num_classes=0, width=ndf, layers=layers, norm="instance", spectral=False))
        return {"G": g, "D": d}  # the objective builds two of each: G_A, G_B from G and D_A, D_B from D

    register_preset(Preset(
        name="cyclegan-resnet9-256", family="cyclegan", task="unpaired", resolution=256, objective="cyclegan",
        components=components(256, 64, 9, 64, 4), training=dict(CYCLEGAN_PAPER),
        paper={"source": "CycleGAN (Zhu et al. 2017): ResNet-9 generators (11.378M each), 70x70 PatchGAN "
                         "(2.765M each); MACs as GAN Compression counts them", "params_m": 11.378, "gmacs": 56.8},
        description="CycleGAN at 256x256: two ResNet-9 generators, two 70x70 PatchGANs, LSGAN + cycle + identity"))
    register_preset(Preset(
        name="cyclegan-tiny32", family="cyclegan", task="unpaired", resolution=32, objective="cyclegan",
        components=components(32, 8, 3, 16, 3),
        training={k: v for k, v in CYCLEGAN_TINY.items() if v is not None},
        description="tiny CycleGAN (ResNet ngf 8, 3 blocks; PatchGAN width 16) for CPU tests on "
                    "openmoji-faces2animals-32"))
