"""One ``TorchDispatchMode`` pass over a forward: FLOPs per executed op and, optionally, the peak of live storages.

The FLOP formulas are ``torch.utils.flop_counter``'s, with per-op overrides for other counting conventions (see
``leangen.profile.macs``). Works on any device, ``meta`` included: the formulas need shapes only.
"""
from __future__ import annotations

import weakref
from collections import Counter
from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


def _storage_key(t: torch.Tensor) -> tuple[int, int] | None:
    try:
        st = t.untyped_storage()
        return st._cdata, st.nbytes()
    except (RuntimeError, NotImplementedError, TypeError):  # sparse / nested / functional wrappers: no plain storage
        return None


class CountingMode(TorchDispatchMode):
    """Counts FLOPs per op with ``torch.utils.flop_counter``'s formulas and, optionally, the peak of live storages.

    ``overrides`` replace the formulas of some ops (``{aten op packet: formula}``). Memory tracking: an op output
    whose storage belongs to none of the op's inputs is a fresh allocation; it stays live until the last Python tensor
    seen on that storage is collected (PyTorch keeps a tensor's Python object alive while C++ still holds the tensor,
    so this is the storage's lifetime). Views and ``out=``/in-place results share an input's storage and allocate
    nothing.
    """

    def __init__(self, overrides: dict[Any, Callable[..., int]] | None = None, track_memory: bool = False):
        super().__init__()
        from torch.utils.flop_counter import flop_registry

        self.registry = {**flop_registry, **(overrides or {})}
        self.flops = 0
        self.by_op: Counter[str] = Counter()
        self.uncounted: Counter[str] = Counter()
        self.track_memory = track_memory
        self.live: dict[int, list[int]] = {}  # storage key -> [nbytes, number of live tensors seen on it]
        self.current = 0
        self.peak = 0

    def _release(self, key: int) -> None:
        entry = self.live.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            self.current -= entry[0]
            del self.live[key]

    def _track(self, out: Any, args: Any, kwargs: Any) -> None:
        inputs = {k[0] for k in (_storage_key(t) for t in tree_flatten((args, kwargs))[0]
                                 if isinstance(t, torch.Tensor)) if k is not None}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            k = _storage_key(t)
            if k is None:
                continue
            key, nbytes = k
            entry = self.live.get(key)
            if entry is None:
                if key in inputs:
                    continue  # a view of / write into memory that existed before this pass: not ours to count
                entry = self.live[key] = [nbytes, 0]
                self.current += nbytes
                self.peak = max(self.peak, self.current)
            entry[1] += 1
            weakref.finalize(t, self._release, key)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        packet = func._overloadpacket
        if packet not in self.registry and func is not torch.ops.prim.device.default:
            # Composite ops without a formula may decompose into ones that have one (as FlopCounterMode does).
            with self:
                r = func.decompose(*args, **kwargs)
            if r is not NotImplemented:
                return r
        out = func(*args, **kwargs)
        formula = self.registry.get(packet)
        if formula is not None:
            n = int(formula(*args, **kwargs, out_val=out))
            self.flops += n
            self.by_op[str(packet)] += n
        else:
            self.uncounted[str(packet)] += 1
        if self.track_memory:
            self._track(out, args, kwargs)
        return out
