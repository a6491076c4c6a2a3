"""RNG states as plain tensors and numbers, so a training snapshot loads with ``torch.load(weights_only=True)``."""
from __future__ import annotations

import random
from typing import Any, Mapping

import numpy as np
import torch


def get_rng_state(device: torch.device) -> dict[str, Any]:
    """Torch CPU (+ CUDA of ``device``), numpy and python ``random`` states."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()  # type: ignore[misc]
    version, py_state, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": int(version), "state": torch.tensor(py_state, dtype=torch.int64), "gauss": py_gauss},
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    """Restore what ``get_rng_state`` returned (CUDA only when ``device`` is a CUDA device and it was saved)."""
    torch.set_rng_state(state["torch"])
    npst = state["numpy"]
    np.random.set_state(("MT19937", npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"],
                         npst["gauss"]))
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
