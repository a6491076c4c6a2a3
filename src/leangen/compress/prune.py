"""Structural pruning: remove channels whose importance is below a threshold, or the least important ones until the
executed MACs fit a budget, and return an ordinary model of the same type built with the smaller ``channels``.

Generic over ``leangen.ops.prunable``: the model declares its width groups (which norms score a width and which
``(parameter, dim[, offset])`` it sizes: residual coupling, transposed-conv layouts and concatenated skips included);
nothing here knows the architecture. Importance of a channel: ``leangen.ops.group_lasso.channel_scores``.

Rules (ours; configurable):

- ``threshold`` (default 1e-4): channels whose (γ, β) norm is at or below it are removed. After condensation the
  penalized channels are exact zeros, so removing them does not change the output (tested).
- ``macs_budget``: binary search, as CAT does, for the smallest global threshold over the sorted channel scores
  whose pruned model executes at most that many MACs per image (counted on the ``meta`` device).
- ``min_channels`` (default 1): every width keeps at least this many channels, its highest-scoring ones
  (CAT keeps 16 at 256 px; tiny models need fewer).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from leangen.ops.group_lasso import channel_scores


def _keep(scores: list[torch.Tensor], threshold: float, min_channels: int) -> list[torch.Tensor]:
    """Sorted indices of the channels kept in each group."""
    kept = []
    for s in scores:
        idx = torch.nonzero(s > threshold).flatten()
        if idx.numel() < min(min_channels, s.numel()):
            idx = torch.topk(s, min(min_channels, s.numel())).indices.sort().values
        kept.append(idx)
    return kept


def top_channels(scores: Sequence[torch.Tensor], widths: Sequence[int]) -> list[torch.Tensor]:
    """Per group, the sorted indices of its ``widths[g]`` highest-scoring channels."""
    if len(widths) != len(scores):
        raise ValueError(f"got {len(widths)} widths for a model with {len(scores)} width groups")
    kept = []
    for g, (s, w) in enumerate(zip(scores, widths)):
        if not 1 <= int(w) <= s.numel():
            raise ValueError(f"width {g} must be between 1 and {s.numel()}, got {w}")
        kept.append(torch.topk(s, int(w)).indices.sort().values)
    return kept


def _config(model: nn.Module, kept: list[torch.Tensor]) -> dict[str, Any]:
    return pruned_config(model, [int(k.numel()) for k in kept])


def pruned_config(model: nn.Module, widths: Sequence[int]) -> dict[str, Any]:
    """The config of ``model`` with these widths: its own ``pruned_config`` where it has one (``leangen.ops.prunable``),
    else its config with ``channels`` replaced."""
    hook = getattr(model, "pruned_config", None)
    if hook is not None:
        return dict(hook([int(w) for w in widths]))
    return dict(model.config, channels=[int(w) for w in widths])  # type: ignore[attr-defined]


def executed_macs(model_type: str, config: dict[str, Any]) -> int:
    """Executed MACs per image of ``model_type(**config)`` on its own ``example_inputs(1)`` (the protocol of
    ``leangen.profile``: the model's size, aspect ratio and input channels included), counted on the ``meta``
    device (no weights built)."""
    from leangen.models.base import MODEL_TYPES
    from leangen.profile import count_macs
    from leangen.profile.inputs import example_inputs

    with torch.device("meta"):
        model = MODEL_TYPES[model_type](**config)
    # Built outside the meta context (seeded CPU draws, a label map is small), then moved: only shapes matter.
    args, kwargs = example_inputs(model, 1, device="meta")
    return count_macs(model, args, kwargs)


def _kept_index(size: int, segments: list[tuple[int, int, torch.Tensor]]) -> torch.Tensor:
    """Indices kept along a dimension of ``size`` entries: each ``(offset, width, kept)`` segment keeps only
    ``offset + kept``; entries outside every segment (a fixed-width part of a concatenation) are all kept."""
    mask = torch.ones(size, dtype=torch.bool)
    for offset, width, kept in segments:
        mask[offset:offset + width] = False
        mask[offset + kept.cpu()] = True
    return torch.nonzero(mask).flatten()


def build_pruned(model: nn.Module, kept: list[torch.Tensor]) -> nn.Module:
    """A new model of ``model``'s type with widths ``len(kept[g])`` and the kept slices of every tensor."""
    from leangen.models.base import MODEL_TYPES

    new = MODEL_TYPES[model.model_type](**_config(model, kept))  # type: ignore[attr-defined]
    # All segments of one (tensor, dim) are cut at once: cutting one segment first would shift the offsets of the
    # others (the skip and decoder parts of a U-Net's concatenated input).
    cuts: dict[tuple[str, int], list[tuple[int, int, torch.Tensor]]] = {}
    for group in model.channel_groups():  # type: ignore[operator]
        width = int(model.widths[group.index])  # type: ignore[attr-defined]
        for name, dim, *offset in group.slices:
            cuts.setdefault((name, dim), []).append((offset[0] if offset else 0, width, kept[group.index]))
    state = {}
    for name, t in model.state_dict().items():
        for dim in range(t.dim()):
            if (name, dim) in cuts:
                t = t.index_select(dim, _kept_index(t.shape[dim], cuts[(name, dim)]).to(t.device))
        state[name] = t.clone()
    new.load_state_dict(state, strict=True)
    return new.to(next(model.parameters()).device).eval()


def prune(model: nn.Module, threshold: float | None = 1e-4, macs_budget: float | None = None,
          min_channels: int = 1, widths: Sequence[int] | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Prune ``model`` (a condensed model with affine norms) by ``threshold``, to ``macs_budget`` MACs per image, or
    to the given ``widths`` (per group, its highest-scoring channels; ``threshold`` is then recorded as None).

    Returns ``(pruned model, info)``; ``info``: ``channels_before``, ``channels_after``, ``threshold`` (the one used),
    ``macs_before``, ``macs_after`` (executed, per image), ``kept`` (per width, the indices of the kept channels in
    ``model``: what feature distillation matches them against).
    """
    scores = channel_scores(model)
    mtype = model.model_type  # type: ignore[attr-defined]
    macs_before = executed_macs(mtype, dict(model.config))  # type: ignore[attr-defined]
    if macs_budget is not None:
        candidates = torch.unique(torch.cat(scores)).tolist()  # ascending
        lo, hi = 0, len(candidates) - 1  # answer: the smallest index whose pruned MACs fit (hi always fits)
        if executed_macs(mtype, _config(model, _keep(scores, candidates[hi], min_channels))) > macs_budget:
            raise ValueError(f"even the narrowest model ({min_channels} channel(s) per width) exceeds the budget of "
                             f"{macs_budget / 1e9:.3f} GMACs")
        below = candidates[0] - 1.0
        if executed_macs(mtype, _config(model, _keep(scores, below, min_channels))) <= macs_budget:
            threshold = below
        else:
            while lo < hi:
                mid = (lo + hi) // 2
                if executed_macs(mtype, _config(model, _keep(scores, candidates[mid], min_channels))) <= macs_budget:
                    hi = mid
                else:
                    lo = mid + 1
            threshold = candidates[lo]
    elif widths is not None:
        threshold = None
    elif threshold is None:
        raise ValueError("give a threshold, a MACs budget or widths")
    kept = top_channels(scores, widths) if widths is not None else _keep(scores, float(threshold), min_channels)
    pruned = build_pruned(model, kept)
    info = dict(channels_before=list(model.config.get("channels") or model.widths),  # type: ignore[attr-defined]
                channels_after=[int(k.numel()) for k in kept],
                threshold=None if threshold is None else float(threshold),
                macs_before=macs_before, macs_after=executed_macs(mtype, dict(pruned.config)),  # type: ignore[arg-type]
                min_channels=min_channels, kept=[k.tolist() for k in kept])
    return pruned, info


def narrowest_macs(model: nn.Module, min_channels: int = 1) -> int:
    """Executed MACs per image of ``model`` pruned to ``min_channels`` per width: the smallest budget it can meet."""
    widths = list(model.config.get("channels") or model.widths)  # type: ignore[attr-defined]
    config = pruned_config(model, [min(int(min_channels), int(w)) for w in widths])
    return executed_macs(model.model_type, config)  # type: ignore[attr-defined]
