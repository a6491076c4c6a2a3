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
from leangen.ops.masked_static import StaticSampler


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
               cached: bool = True, static: bool = False) -> torch.Tensor:
        """uint8 ``[n, C, N, N]``; uniforms from ``generator`` (CPU) in raster/channel order. ``static``: the cached
        path as one fixed-shape step per pixel, a CUDA graph on CUDA (``leangen.ops.masked_static``); same draws."""
        r, c = self.img_resolution, self.img_channels
        u = torch.rand(n, r, r, c, generator=generator, dtype=torch.float64)
        was_training = self.training
        self.eval()
        if static:
            out = StaticSampler(self.decoder, n, r, r, temperature).sample(u)
        else:
            out = self.decoder.sample(n, r, r, u, None, temperature, cached)
        self.train(was_training)
        return out.to(torch.uint8)

    def extra_repr(self) -> str:
        return f"resolution={self.img_resolution}, bits={self.bits}, likelihood={self.decoder.likelihood}"
