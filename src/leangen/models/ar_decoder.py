"""The full-image autoregressive baseline: the SPN decoder's masked-conv blocks over the whole ``N x N`` image.

Same blocks as the SPN decoder (``ops.masked.MaskedConvDecoder``), no slicing and no conditioning network: pixels in
raster order over the full image, R -> G -> B within a pixel, a categorical over ``2**bits`` values per sub-pixel
(or, with ``likelihood="logistic_mixture"``, the SPN's discretized logistic mixture head).
Training memory grows with the whole image (``S²`` times an SPN's one slice), which is what subscaling saves.
"""
from __future__ import annotations

import torch

from leangen.models.base import LikelihoodModel, register_model
from leangen.ops.masked import Likelihood, MaskedConvDecoder, to_unit


@register_model("ar-decoder")
class ARDecoder(LikelihoodModel):
    """Masked-conv PixelCNN over ``resolution``² images at ``bits`` bits.

    ``log_prob``: uint8 ``[B, C, N, N]`` (0..2**bits-1) -> nats ``[B]``. ``likelihood``/``mixtures``/``coupled``: the
    per-sub-pixel distribution (``ops.masked.MaskedConvDecoder``).
    """

    sampling_is_cheap = False  # C * N² sequential steps

    def __init__(self, resolution: int = 32, channels: int = 3, bits: int = 8, hidden: int = 64, blocks: int = 4,
                 kernel: int = 3, likelihood: Likelihood = "categorical", mixtures: int = 5,
                 coupled: bool = True) -> None:
        super().__init__()
        if not 1 <= bits <= 8:
            raise ValueError(f"bits must be in 1..8, got {bits}")
        self.img_resolution, self.img_channels, self.bits = resolution, channels, bits
        self.decoder = MaskedConvDecoder(channels, 2 ** bits, hidden, blocks, kernel, likelihood=likelihood,
                                         mixtures=mixtures, coupled=coupled)

    def log_prob(self, images: torch.Tensor) -> torch.Tensor:
        shape = (self.img_channels, self.img_resolution, self.img_resolution)
        if images.dim() != 4 or tuple(images.shape[1:]) != shape or images.is_floating_point():
            raise ValueError(f"expected integer images [B, {', '.join(map(str, shape))}], got "
                             f"{images.dtype} {tuple(images.shape)}")
        return self.decoder.log_prob(self.decoder(to_unit(images, 2 ** self.bits)), images)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0,
               cached: bool = True) -> torch.Tensor:
        """uint8 ``[n, C, N, N]``; uniforms from ``generator`` (CPU) in raster/channel order."""
        r, c = self.img_resolution, self.img_channels
        u = torch.rand(n, r, r, c, generator=generator, dtype=torch.float64)
        was_training = self.training
        self.eval()
        out = self.decoder.sample(n, r, r, u, None, temperature, cached)
        self.train(was_training)
        return out.to(torch.uint8)

    def extra_repr(self) -> str:
        return f"resolution={self.img_resolution}, bits={self.bits}, likelihood={self.decoder.likelihood}"


def _register_presets() -> None:
    from leangen.registry import Preset, register_preset

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


_register_presets()
