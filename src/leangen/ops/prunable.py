"""What a channel-prunable model declares (scored by ``leangen.ops.group_lasso``, pruned by ``leangen.compress.prune``).

A prunable model has a ``channels`` constructor argument (one width per prunable layer), a ``widths`` attribute (its
current values) and a ``channel_groups()`` method returning one ``ChannelGroup`` per entry of that list: the
normalization layers whose per-channel scale and shift (γ, β) score the group's channels, and every
``(parameter name, dim[, offset])`` the width sizes (ResNet, U-Net and ASAP-Net generators implement it). The pruner
(``leangen.compress.prune``) is generic over this declaration; it never looks at the architecture itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field


#: A tensor dimension a width sizes: ``(state-dict name, dim)``, or ``(name, dim, offset)`` when the width is one
#: segment ``offset .. offset + width`` of a concatenated input (a U-Net decoder reading skip + upsampled features).
Slice = tuple[str, int] | tuple[str, int, int]


@dataclass(frozen=True)
class ChannelGroup:
    """Width ``index`` of a model's ``channels`` list. ``norms``: module names of the affine norms producing it
    (γ ``{norm}.weight``, β ``{norm}.bias``); ``slices``: every tensor dimension (``Slice``) that this width sizes,
    norm statistics (``running_mean``/``running_var``) included."""

    index: int
    norms: list[str]
    slices: list[Slice] = field(default_factory=list)


def default_widths(ngf: int, n_down: int) -> list[int]:
    """``[ngf, 2 ngf, ..., 2**n_down ngf]``: the stem and downsampling widths of pix2pix-style encoders."""
    return [ngf * 2 ** i for i in range(n_down + 1)]
