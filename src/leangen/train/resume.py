"""Counters of a run, and restoring everything a snapshot holds so that a resumed run continues exactly.

A snapshot restores: trained and EMA modules (frozen ones are rebuilt by the objective from their recorded path and
checked against the recorded checksum), optimizer states, the objective's extra state, the counters, every rank's
RNG states and the data position.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from leangen import runs
from leangen.train.objective import Objective
from leangen.train.runtime import Runtime


@dataclass
class RunState:
    """Where a run is. ``tick_start_nimg``: images at the start of the current tick (already advanced past the tick
    that wrote a snapshot, so a resumed run ticks at the same steps as one that never stopped)."""

    cur_nimg: int = 0
    step: int = 0
    tick: int = 0
    tick_start_nimg: int = 0
    total_time: float = 0.0
    data_position: int = 0
    best_metric: dict[str, Any] | None = None


def module_digest(module: nn.Module) -> str:
    """sha256 of a module's state dict (names, shapes, dtypes and bytes), to recognise a frozen module."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def snapshot_index(objective: Objective, task_name: str, preset: str) -> dict[str, Any]:
    """What ``leangen.load`` needs to know about a snapshot: task, objective, the entry module and every role."""
    ema = objective.ema_pairs()
    frozen = objective.frozen_sources()
    mods: dict[str, Any] = {}
    for name, role in objective.roles().items():
        entry: dict[str, Any] = {"role": role}
        if role == "ema":
            entry["of"] = ema[name]
        if role == "frozen":
            entry["source"] = frozen[name]
            entry["sha256"] = module_digest(objective.modules()[name])
        mods[name] = entry
    return {"task": task_name, "objective": objective.name, "entry": objective.entry, "preset": preset,
            "modules": mods}


def saved_modules(objective: Objective) -> dict[str, nn.Module]:
    """The modules a snapshot writes: all but the frozen ones."""
    roles = objective.roles()
    return {k: m for k, m in objective.modules().items() if roles[k] != "frozen"}


def seed_fresh(rt: Runtime, seed: int) -> None:
    """A new run: different latents/noise per rank, reproducible from ``seed``."""
    np.random.seed((seed * rt.world_size + rt.rank) % (1 << 32))
    torch.manual_seed(seed * rt.world_size + rt.rank)
    random.seed(seed * rt.world_size + rt.rank)


def restore(snapshot: Path, objective: Objective, *, preset: str, rt: Runtime, batch: int, seed: int,
            log: Callable[[str], None]) -> RunState:
    """Load ``snapshot`` into ``objective`` and the RNGs; return the counters. Raises
    ``runs.IncompatibleCheckpointError`` when it belongs to another preset/objective or a frozen module changed."""
    st = runs.load_state(snapshot)
    if st.get("preset") != preset or st.get("objective") != objective.name:
        raise runs.IncompatibleCheckpointError(
            f"{snapshot} was trained with preset {st.get('preset')!r} ({st.get('objective')} objective), "
            f"not {preset!r}; resume with the run's own preset or start a new run")
    _check_frozen(snapshot, objective)
    runs.load_modules(snapshot, saved_modules(objective))
    for name, opt in objective.optimizers().items():
        opt.load_state_dict(st["optimizers"][name])
    objective.load_state_dict(st.get("objective_state", {}))
    state = RunState(cur_nimg=int(st["cur_nimg"]), step=int(st["step"]), tick=int(st["tick"]),
                     tick_start_nimg=int(st["tick_start_nimg"]), total_time=float(st["total_time"]),
                     data_position=int(st["data"]["position"]), best_metric=st.get("best_metric"))
    old_ws = int(st["world_size"])
    if old_ws != rt.world_size or int(st["batch"]) != batch:
        state.data_position = state.data_position * old_ws // rt.world_size
        log(f"note: resuming with {rt.world_size} process(es) and batch {batch} (the snapshot had "
            f"{old_ws} and {st['batch']}): training continues but is not bit-identical")
    rngs = st["rng"]
    if len(rngs) == rt.world_size:
        runs.set_rng_state(rngs[rt.rank], rt.device)
    else:
        torch.manual_seed(seed * rt.world_size + rt.rank + state.step)
    return state


def _check_frozen(snapshot: Path, objective: Objective) -> None:
    import json

    path = snapshot / "index.json"
    if not path.is_file():
        return
    recorded = (json.loads(path.read_text()).get("modules") or {})
    modules = objective.modules()
    for name, info in recorded.items():
        if info.get("role") != "frozen" or name not in modules:
            continue
        if info.get("sha256") and module_digest(modules[name]) != info["sha256"]:
            raise runs.IncompatibleCheckpointError(
                f"the frozen {name} loaded from {objective.frozen_sources().get(name)} is not the one this run was "
                f"trained with (recorded: {info.get('source')}, sha256 {info['sha256'][:12]}...); point the "
                f"hyper-parameter at the original or start a new run")
