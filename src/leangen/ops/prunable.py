"""What a channel-prunable model declares (scored by ``leangen.ops.group_lasso``, pruned by ``leangen.compress.prune``).

A prunable model has a ``channels`` constructor argument (one width per prunable layer), a ``widths`` attribute (its
current values) and a ``channel_groups()`` method returning one ``ChannelGroup`` per entry of that list: the
normalization layers whose per-channel scale and shift (γ, β) score the group's channels, and every
``(parameter name, dim[, offset])`` the width sizes (ResNet, U-Net and ASAP-Net generators, StyleGAN2 implement it). The pruner
(``leangen.compress.prune``) is generic over this declaration; it never looks at the architecture itself.

A model without normalization layers (StyleGAN2: modulated convs with demodulation) exposes each width through a
``ChannelScale`` γ instead (γ = 1 at construction, so a teacher's weights load into a copy that has them and compute
the same function); its model applies γ where a zero removes the channel exactly (StyleGAN2: to the styles of the
convs that read the channel, so demodulation no longer counts it). A model whose pruned copy needs more than its
smaller ``channels`` in its config (StyleGAN2 keeps the fan-in of its equalized-lr gains) defines
``pruned_config(widths)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


#: A tensor dimension a width sizes: ``(state-dict name, dim)``, or ``(name, dim, offset)`` when the width is one
#: segment ``offset .. offset + width`` of a concatenated input (a U-Net decoder reading skip + upsampled features).
Slice = tuple[str, int] | tuple[str, int, int]


@dataclass(frozen=True)
class ChannelGroup:
    """Width ``index`` of a model's ``channels`` list. ``norms``: module names of the affine norms producing it
    (γ ``{norm}.weight``, β ``{norm}.bias``; or of its ``ChannelScale``, γ only); ``slices``: every tensor
    dimension (``Slice``) that this width sizes, norm statistics (``running_mean``/``running_var``) included;
    ``features``: the modules whose outputs ``[B, C, ...]`` carry the width's channels, which feature distillation
    matches (default: the norms)."""

    index: int
    norms: list[str]
    slices: list[Slice] = field(default_factory=list)
    features: list[str] = field(default_factory=list)


def default_widths(ngf: int, n_down: int) -> list[int]:
    """``[ngf, 2 ngf, ..., 2**n_down ngf]``: the stem and downsampling widths of pix2pix-style encoders."""
    return [ngf * 2 ** i for i in range(n_down + 1)]


class ChannelScale(nn.Module):
    """A learned per-channel factor γ (``weight [C]``, ones at construction), ``x [B, C, ...] -> x * γ``: the scale
    condensation penalizes in a model without affine norms (it has no β: a scaled-away channel is exactly zero)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.to(x.dtype).view((1, -1) + (1,) * (x.dim() - 2))

    def extra_repr(self) -> str:
        return str(self.weight.numel())
