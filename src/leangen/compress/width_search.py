"""Widths for a latency budget from a per-group latency table measured on the target runtime, chosen greedily by
importance lost per millisecond saved.

Why not one global threshold over the channel scores (``leangen.compress.latency.choose_threshold``): scores say
which channels matter, not what they cost. On ONNX Runtime at 2 threads, ResNet-9 at 256² with 8 channels in every
width runs in 13.2 ms; widening only the last up-sampling width to 32 adds 16.5 ms, only the stem to 32 adds 5.8 ms,
and all nine residual-block widths to 64 together add 5.9 ms (measured on this project's 2-core CPU, 2026-12-05).
A threshold keeps 20-45 channels at full resolution, where every channel is paid in memory traffic.

Method (ours, in the spirit of NetAdapt, Yang et al. 2018, which also prunes against measured latency tables):

1. The widest candidate keeps every channel scoring above ``threshold`` (exact zeros after condensation go free);
   if it meets the budget, it is the answer.
2. Round 1 starts from the narrowest model (``min_channels`` per width) and measures, for each group ``g``, the
   model with ``g`` widened to each width ``v`` of its grid (fractions of the widest), the others narrowest: the
   table ``T[g][v]`` (ms). Each group's candidates are timed in one interleaved call beside the round's point, so
   a slower phase of a shared machine shifts them alike and their differences hold. Only models near the budget's
   size are built and exported, so a round is cheap even when the teacher takes seconds per image. The predicted
   latency of widths ``u`` is ``L(w) + sum_g (T[g][u_g] - L(w))``: additive around the point ``w`` where the table
   was measured, ``L(w)`` being the median of the point's own timings in the round's calls.
3. Greedy (``greedy_widths``): from ``w``, narrow while the prediction is over ``budget * (1 - margin)``, taking the
   move that loses the least importance (the summed scores of the channels it drops) per ms saved; then widen into
   the remaining slack, most importance regained per ms first.
4. Build and measure the chosen widths (the median of bursts a few seconds apart). Over budget (the additive
   prediction misses the interaction of coupled widths: a convolution's cost grows with the product of its input
   and output widths): another round, its table measured around the new point with narrower widths only. At most
   ``rounds`` rounds.

Every round (its point, table, choice and measured time) is returned for the prune report.

``uniform_widths`` is the other search (``--width-search uniform``): one width multiplier for every group, as the
students of GAN Compression and CAT keep one ``ngf`` for the whole network, found by bisection on measured latency.
The greedy spends the budget where channels are cheapest per score, and on ResNet-9 that left 8 channels in the
residual trunk that every block reads and writes; a multiplier keeps the teacher's proportions.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
from torch import nn

#: Fractions of the current width that a narrowing round measures for each group (plus ``min_channels``).
GRID = (0.75, 0.5, 0.25)
#: Fractions of the widest width that the first round (from the narrowest model) measures for each group.
UP_GRID = (0.125, 0.25, 0.5, 0.75, 1.0)


def _lost(sorted_scores: torch.Tensor, width: int) -> float:
    """Importance dropped by keeping ``width`` channels of a group (its scores sorted descending)."""
    return float(sorted_scores[width:].sum())


def grid(current: int, floor: int, fractions: Sequence[float] = GRID) -> list[int]:
    """The widths below ``current`` a narrowing round measures: ``current * f`` for each fraction, and ``floor``."""
    return sorted(({max(floor, math.ceil(current * f)) for f in fractions} | {floor}) - {current}, reverse=True)


def up_grid(widest: int, floor: int, fractions: Sequence[float] = UP_GRID) -> list[int]:
    """The widths above ``floor`` the first round measures: ``widest * f`` for each fraction."""
    return sorted({max(floor, math.ceil(widest * f)) for f in fractions} - {floor})


def greedy_widths(start: Sequence[int], table: Sequence[dict[int, float]], base_ms: float, budget_ms: float,
                  scores: Sequence[torch.Tensor]) -> list[int]:
    """The widths (each ``start[g]`` or one of ``table[g]``'s) that the greedy of the module doc picks: predicted to
    meet ``budget_ms``, losing the least importance per ms. When no choice is predicted to meet it, the one predicted
    fastest (every group at its smallest measured width)."""
    ranked = [s.sort(descending=True).values for s in scores]
    options = [{int(start[g]): base_ms, **{int(v): ms for v, ms in table[g].items()}} for g in range(len(start))]
    u = [int(w) for w in start]

    def predicted() -> float:
        return base_ms + sum(options[g][u[g]] - base_ms for g in range(len(u)))

    while predicted() > budget_ms:
        best: tuple[float, int, int] | None = None
        for g, opts in enumerate(options):
            for v, ms in opts.items():
                saved = opts[u[g]] - ms
                if v < u[g] and saved > 0:
                    cost = (_lost(ranked[g], v) - _lost(ranked[g], u[g])) / saved
                    if best is None or cost < best[0]:
                        best = (cost, g, v)
        if best is None:  # nothing measured saves time: the narrowest measured point is all that is left
            return [min(o) for o in options]
        u[best[1]] = best[2]
    while True:  # widen back where the prediction still meets the budget: most importance regained per ms first
        slack = budget_ms - predicted()
        best = None
        for g, opts in enumerate(options):
            for v, ms in opts.items():
                extra = ms - opts[u[g]]
                if v > u[g] and extra <= slack:  # measured no slower (noise): free, the largest gain
                    gain = (_lost(ranked[g], u[g]) - _lost(ranked[g], v)) / max(extra, 1e-9)
                    if gain > 0 and (best is None or gain > best[0]):
                        best = (gain, g, v)
        if best is None:
            return u
        u[best[1]] = best[2]


def search_widths(model: nn.Module, budget_ms: float, measure: Callable[[dict[str, nn.Module]], dict[str, float]],
                  threshold: float, min_channels: int = 1, rounds: int = 4, margin: float = 0.05,
                  bursts: int | None = None, log: Callable[[str], None] | None = None
                  ) -> tuple[list[int], list[dict[str, Any]]]:
    """Widths of ``model`` (a condensed model) whose pruned model measures at most ``budget_ms``, and the record of
    every round (``widths``, ``latency_ms``, ``table`` ``[{width: ms}]`` per group, ``chosen``, ``predicted_ms``,
    ``measured_ms``). ``measure`` times a dict of models in one interleaved call (``measure_many_ms``): each
    group's candidates are timed beside the round's point, so the table holds differences measured in the same
    phase of the machine. A choice is accepted on the median of ``bursts`` measurements (``leangen.compress.latency.
    in_bursts``). ``LatencyUnreachable`` when the last round's choice is still over budget."""
    import statistics

    from leangen.compress.latency import LatencyUnreachable, in_bursts
    from leangen.compress.prune import _keep, build_pruned, top_channels
    from leangen.ops.group_lasso import channel_scores

    say = log or (lambda _m: None)
    scores = channel_scores(model)
    floors = [min(int(min_channels), s.numel()) for s in scores]

    def timed(many: dict[str, Sequence[int]]) -> dict[str, float]:
        return measure({k: build_pruned(model, top_channels(scores, w)) for k, w in many.items()})

    def settled(widths: Sequence[int]) -> float:
        return statistics.median(in_bursts(lambda: timed({"c": widths})["c"], bursts))

    widest = [int(k.numel()) for k in _keep(scores, threshold, min_channels)]
    full = timed({"c": widest})["c"]
    say(f"prune: {sum(widest)} channels above the threshold -> {full:.3f} ms")
    if full <= budget_ms:
        return widest, [dict(widths=widest, latency_ms=full, table=[], chosen=widest, predicted_ms=full,
                             measured_ms=full)]
    w = [min(f, x) for f, x in zip(floors, widest)]
    base = timed({"c": w})["c"]
    record: list[dict[str, Any]] = []
    for r in range(rounds):
        points = [up_grid(widest[g], w[g]) if r == 0 else grid(w[g], floors[g]) for g in range(len(w))]
        deltas: list[dict[int, float]] = []
        at_point = []
        for g in range(len(w)):
            if not points[g]:
                deltas.append({})
                continue
            got = timed({"point": w, **{str(v): [v if i == g else x for i, x in enumerate(w)] for v in points[g]}})
            at_point.append(got["point"])
            deltas.append({v: got[str(v)] - got["point"] for v in points[g]})
        # the point itself, timed once per group call across the round: its median is steadier than any one figure
        base = statistics.median(at_point) if at_point else base
        table = [{v: base + d for v, d in dg.items()} for dg in deltas]
        chosen = greedy_widths(w, table, base, budget_ms * (1 - margin), scores)
        predicted = base + sum(({w[g]: base} | table[g])[chosen[g]] - base for g in range(len(w)))
        measured = settled(chosen)
        record.append(dict(widths=w, latency_ms=base, table=[{str(v): ms for v, ms in t.items()} for t in table],
                           chosen=chosen, predicted_ms=predicted, measured_ms=measured))
        say(f"prune: round {r + 1}: widths {chosen} predicted {predicted:.3f} ms, measured {measured:.3f} ms "
            f"(budget {budget_ms:.3f} ms)")
        if measured <= budget_ms:
            return chosen, record
        if chosen == w:
            break  # no move left that the table says saves time
        w, base = chosen, measured
    best = record[-1]["measured_ms"]
    raise LatencyUnreachable(f"the width search ended at {best:.3f} ms ({1000 / best:.1f} FPS) after {len(record)} "
                             f"round(s), over the target of {budget_ms:.3f} ms", best)


def scaled(widest: Sequence[int], floors: Sequence[int], fraction: float) -> list[int]:
    """``widest`` times ``fraction`` (rounded up), each at least its floor and at most its widest."""
    return [min(w, max(f, math.ceil(w * fraction))) for w, f in zip(widest, floors)]


def uniform_widths(model: nn.Module, budget_ms: float, measure: Callable[[dict[str, nn.Module]], dict[str, float]],
                   threshold: float, min_channels: int = 1, steps: int = 7, bursts: int | None = None,
                   log: Callable[[str], None] | None = None) -> tuple[list[int], list[dict[str, Any]]]:
    """The widest ``scaled(widest, floors, f)`` measured within ``budget_ms``: bisection on the multiplier ``f`` in
    (0, 1] for ``steps`` steps, ``widest`` being each group's channels above ``threshold``. A probe passes when
    every one of its ``bursts`` measurements (``in_bursts``, seconds apart) meets the budget: on this project's 2-core
    machine one ONNX Runtime model alternates between about 32 and 40 ms in phases of seconds, so a median of three
    bursts passed a student at 32.1 ms that then measured 40.8 ms after distillation. Every probe is returned
    (``fraction``, ``widths``, ``measured_ms``: the slowest burst, ``bursts_ms``).
    ``LatencyUnreachable`` when the narrowest model (``min_channels`` per group) is over budget."""
    from leangen.compress.latency import LatencyUnreachable, in_bursts
    from leangen.compress.prune import _keep, build_pruned, top_channels
    from leangen.ops.group_lasso import channel_scores

    say = log or (lambda _m: None)
    scores = channel_scores(model)
    widest = [int(k.numel()) for k in _keep(scores, threshold, min_channels)]
    floors = [min(int(min_channels), w) for w in widest]
    probes: list[dict[str, Any]] = []

    def fits(fraction: float) -> bool:
        widths = scaled(widest, floors, fraction)
        got = in_bursts(lambda: measure({"c": build_pruned(model, top_channels(scores, widths))})["c"], bursts)
        ms = max(got)  # every burst must meet the budget: one that did by luck of the machine's phase does not pass
        probes.append(dict(fraction=fraction, widths=widths, measured_ms=ms, bursts_ms=got))
        say(f"prune: width multiplier {fraction:.4f}: {widths} -> {ms:.3f} ms (budget {budget_ms:.3f} ms)")
        return ms <= budget_ms

    if fits(1.0):
        return widest, probes
    if not fits(0.0):
        best = probes[-1]["measured_ms"]
        raise LatencyUnreachable(f"the narrowest model ({min_channels} channels per width) runs in {best:.3f} ms "
                                 f"({1000 / best:.1f} FPS), over the target of {budget_ms:.3f} ms", best)
    lo, hi, measured = 0.0, 1.0, 0
    for _ in range(4 * steps):  # bisection steps that land on known widths are free
        mid = (lo + hi) / 2
        if scaled(widest, floors, mid) == scaled(widest, floors, lo):
            lo = mid
        elif scaled(widest, floors, mid) == scaled(widest, floors, hi):
            hi = mid
        elif measured == steps:
            break
        else:
            measured += 1
            lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return scaled(widest, floors, lo), probes
