"""Issue 21: the training steps between two ticks never synchronize the host with the GPU. Every step after the
first (which checks the first batch once) runs under ``torch.cuda.set_sync_debug_mode("error")``, which raises on
any synchronizing call (``.item()``, a blocking copy, ``nonzero``...); the tick, which reads the statistics once,
runs outside it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import TensorDataset

pytestmark = pytest.mark.cuda

TINY_GAN = {"G": {"channel_base": 16, "max_channels": 16, "z_dim": 32, "w_dim": 32, "mapping_layers": 2},
            "D": {"channel_base": 16, "max_channels": 16}}
CASES = [  # (preset, overrides, hparams, precision): every optional GAN phase on; the likelihood family; bf16
    ("stylegan2-tiny32", TINY_GAN, {"pl_weight": 2.0, "pl_interval": 2, "r1_interval": 2, "style_mixing": 0.9,
                                    "diffaugment": "color,translation,cutout"}, "fp32"),
    ("stylegan2-tiny32", TINY_GAN, {"r1_interval": 2}, "bf16"),
    ("spn-tiny-32", {}, {}, "fp32"),
]


@pytest.mark.parametrize("preset,overrides,hparams,precision", CASES,
                         ids=["gan-all-phases", "gan-bf16", "likelihood"])
def test_steps_between_ticks_never_synchronize(device: torch.device, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               preset: str, overrides: Any, hparams: dict, precision: str) -> None:
    if device.type != "cuda":
        pytest.skip("torch.cuda.set_sync_debug_mode needs CUDA (tests/test_train_sync.py counts host reads on the CPU)")
    from leangen.train import TrainOptions, train
    from leangen.train.loop import _Run

    orig = _Run._step
    checked: list[int] = []

    def step(self: _Run) -> None:
        if self.first_batch:
            return orig(self)
        torch.cuda.synchronize(device)  # whatever the tick queued is done before the check starts
        torch.cuda.set_sync_debug_mode("error")
        try:
            orig(self)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        checked.append(self.s.step)

    monkeypatch.setattr(_Run, "_step", step)
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=g))
    opts = TrainOptions(preset=preset, data="mem", outdir=str(tmp_path / "runs"), batch=4, tick=0.016, snap=100,
                        steps=8, device=str(device), progress=False, grid=4, overrides=overrides, hparams=hparams,
                        precision=precision)
    res = train(opts, data)
    assert res.status == "done" and checked == list(range(2, 9))
