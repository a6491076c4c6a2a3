"""Group lasso for condensation (``leangen.train.condense``): drive whole channels of a prunable model to exactly zero with a group-lasso penalty on the
per-channel scale and shift of its affine norms.

Design (the paper's exact regularizer was not retrievable; these choices are ours, each configurable):

- **What is penalized.** Channel ``c`` of width group ``g`` (``leangen.ops.prunable.ChannelGroup``) is the vector
  of ``(γ_c, β_c)`` of *every* norm producing that width. For a residual trunk that is the last downsampling norm
  and the second norm of every block, so the channel is driven to zero jointly, where it can actually be removed.
  β is included (unlike network slimming's L1 on γ alone) because a channel with γ = 0 but β ≠ 0 is a constant,
  not a zero; penalizing both makes a zeroed channel exactly removable. A model without norms (StyleGAN2) scores a width
  by a ``ChannelScale`` γ alone (``leangen.ops.prunable``).
- **How.** A proximal (group soft-threshold) step after every optimizer step of the generator:
  ``v_c <- v_c * max(0, 1 - lr * λ * sqrt(m) / ||v_c||)`` for a width read by ``m`` norms. This is ISTA for
  ``λ Σ_c sqrt(m) ||v_c||_2`` (the usual group-size weighting); unlike adding the subgradient to an Adam step
  (which normalizes it away and leaves channels jittering around zero) it reaches exact zeros.
- **Importance** (what pruning ranks): ``||v_c|| / sqrt(m)``, the RMS of the channel's (γ, β) pairs over its norms,
  so one global threshold treats coupled and single widths alike.
- **Schedule.** ``λ(step) = sparsity * min(1, (step + 1) / sparsity_ramp)``: a linear ramp, so the adversarial and
  reconstruction terms re-balance while channels die instead of losing many at once.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn


def _group_vectors(model: nn.Module, group: Any) -> list[torch.Tensor]:
    """The γ and β tensors (each ``[C]``) of every norm of ``group``; empty when the norms are not affine."""
    mods = dict(model.named_modules())
    out = []
    for name in group.norms:
        norm = mods[name]
        if getattr(norm, "weight", None) is None:
            return []
        out += [norm.weight] + ([norm.bias] if getattr(norm, "bias", None) is not None else [])  # ChannelScale: γ
    return out


def channel_scores(model: nn.Module) -> list[torch.Tensor]:
    """Per width group, the importance of each channel ``[C]``: the RMS over the producing norms of its (γ, β) norm.
    ``ValueError`` when the model's norms carry no scale (condense a model built with ``norm_affine=True``)."""
    scores = []
    for group in model.channel_groups():  # type: ignore[operator]
        vecs = _group_vectors(model, group)
        if not vecs:
            raise ValueError(f"{type(model).__name__} has no per-channel scales to score; condense a copy built with "
                             f"them first (norm_affine=True, or channel_gates=True for StyleGAN2)")
        # RMS over the coupled norms (not the plain L2): a trunk channel read by 10 norms must not outrank a block
        # channel read by one just for being counted 10 times (it did, in our first ResNet-9 run: trunk kept whole).
        scores.append(torch.stack([v.detach().float() for v in vecs]).norm(dim=0) / len(group.norms) ** 0.5)
    return scores


@torch.no_grad()
def proximal_step(model: nn.Module, threshold: float) -> None:
    """Group soft-threshold of every channel's (γ, β) vector by ``threshold`` (= lr * λ); see the module doc."""
    if threshold <= 0:
        return
    for group in model.channel_groups():  # type: ignore[operator]
        vecs = _group_vectors(model, group)
        if not vecs:
            continue
        norm = torch.stack([v.float() for v in vecs]).norm(dim=0)
        # group-lasso weight sqrt(number of coupled norms), so scores (RMS) and shrinkage use one scale
        scale = (1 - threshold * len(group.norms) ** 0.5 / norm.clamp_min(1e-12)).clamp_min(0)
        for v in vecs:
            v.mul_(scale.to(v.dtype))
