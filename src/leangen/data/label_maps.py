"""Label-map transforms shared by the paired data sets and the translators' inputs (``leangen.ops.labels``)."""
from __future__ import annotations

import torch


def instance_edges(instances: torch.Tensor) -> torch.Tensor:
    """Instance ids int ``[B, H, W]`` -> ``[B, 1, H, W]`` float: 1 where a 4-neighbour has another id (pix2pixHD's
    boundary map), else 0."""
    t = instances
    edge = torch.zeros_like(t, dtype=torch.bool)
    dx = t[:, :, 1:] != t[:, :, :-1]
    dy = t[:, 1:, :] != t[:, :-1, :]
    edge[:, :, 1:] |= dx
    edge[:, :, :-1] |= dx
    edge[:, 1:, :] |= dy
    edge[:, :-1, :] |= dy
    return edge.unsqueeze(1).float()
