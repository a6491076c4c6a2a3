"""The training step never reads a value back from the device between ticks (issue 21: the GPU must not wait for
the host every step). Counted on the CPU through ``aten._local_scalar_dense``, the op behind ``.item()``,
``.tolist()``, ``float(t)`` and ``if t:``; the GPU tier checks the same under ``torch.cuda.set_sync_debug_mode``."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.data import TensorDataset

from leangen.train import TrainOptions, train
from leangen.train.loop import _Run

TINY_GAN = {"G": {"channel_base": 16, "max_channels": 16, "z_dim": 32, "w_dim": 32, "mapping_layers": 2},
            "D": {"channel_base": 16, "max_channels": 16}}
# Every optional phase of the GAN step is on: path length and R1 every step, style mixing, DiffAugment, bCR, clipping.
GAN_HPARAMS = {"pl_weight": 2.0, "pl_interval": 2, "r1_interval": 2, "style_mixing": 0.9,
               "diffaugment": "color,translation,cutout", "bcr_real": 1.0, "bcr_fake": 1.0, "d_grad_clip": 5.0}


class HostReads(TorchDispatchMode):
    """Counts scalar reads (``aten._local_scalar_dense``), ``.tolist()`` and ``.numpy()`` (which read a CPU tensor's
    memory without dispatching) of any tensor but those in ``host_side`` (by identity)."""

    def __init__(self, host_side: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        super().__init__()
        self.count = 0
        self.host_side = host_side
        self.loading = False  # inside the data loader, which works on host tensors before they go to the device

    def __enter__(self) -> "HostReads":
        self._saved = {name: getattr(torch.Tensor, name) for name in ("tolist", "numpy")}
        for name, method in self._saved.items():
            setattr(torch.Tensor, name, self._counting(method))
        return super().__enter__()

    def __exit__(self, *exc: Any) -> None:
        super().__exit__(*exc)
        for name, method in self._saved.items():
            setattr(torch.Tensor, name, method)

    def _counting(self, method: Any) -> Any:
        def read(t: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            if id(t) not in self.host_side and not self.loading:
                self.count += 1
            return method(t, *args, **kwargs)

        return read

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if (func is torch.ops.aten._local_scalar_dense.default and id(args[0]) not in self.host_side
                and not self.loading):
            self.count += 1
        return func(*args, **(kwargs or {}))


def count_step_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Patch the loop's step so that every step after the first (which checks the first batch once) runs under
    ``HostReads``, minus the host-side data loading; returns the list the counts of those steps go to."""
    counts: list[int] = []
    orig = _Run._step

    def step(self: _Run) -> None:
        if self.first_batch:
            return orig(self)
        # Adam's step counters are CPU tensors by PyTorch's design (unless fused/capturable): reading them is no
        # device synchronization, so they are the one exception.
        counters = {id(st["step"]) for opt in self.objective.optimizers().values() for st in opt.state.values()
                    if "step" in st}
        load = self.stream.next_cpu

        def next_cpu() -> Any:
            mode.loading = True
            try:
                return load()
            finally:
                mode.loading = False

        with HostReads(counters) as mode, monkeypatch.context() as m:
            m.setattr(self.stream, "next_cpu", next_cpu)
            orig(self)
        counts.append(mode.count)

    monkeypatch.setattr(_Run, "_step", step)
    return counts


def images(n: int = 8) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g))


@pytest.mark.parametrize("preset,overrides,hparams", [
    ("stylegan2-tiny32", TINY_GAN, GAN_HPARAMS),
    ("spn-tiny-32", None, {}),
], ids=["gan", "likelihood"])
def test_steps_between_ticks_read_nothing_from_the_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          preset: str, overrides: Any, hparams: dict) -> None:
    counts = count_step_reads(monkeypatch)
    # 6 steps of batch 2, a tick every 3 steps (0.006 kimg): the statistics are read twice, the steps never.
    opts = TrainOptions(preset=preset, data="mem", outdir=str(tmp_path / "runs"), batch=2, tick=0.006, snap=100,
                        steps=6, device="cpu", progress=False, grid=2, overrides=overrides or {}, hparams=hparams)
    res = train(opts, images())
    assert res.status == "done" and res.step == 6
    assert counts == [0] * 5, f"host reads per step after the first: {counts}"


def test_the_host_read_counter_sees_item() -> None:
    """The counter itself: ``.item()``, ``.tolist()``, ``.numpy()``, ``float()`` and ``if t:`` are counted, a tensor
    declared host-side is not."""
    t, host = torch.ones(3), torch.zeros(())
    with HostReads({id(host)}) as mode:
        t.sum().item()
        t.tolist()
        t.numpy()
        float(t[0])
        if t[1]:
            pass
        host.item()
    assert mode.count == 5
    t.tolist()  # after the block: not counted any more
    assert mode.count == 5
