"""bf16 autocast training for every family (issue 21): from the same weights and the same batch, one bf16 step
gives the statistics of the fp32 step within a stated tolerance, and what must stay fp32 stays fp32 (weights,
optimizer moments, EMA, the statistics: losses, R1 / path-length penalties and log-likelihoods are accumulated in
fp32 by the objectives). The CPU runs bf16 autocast the way CUDA does (bf16 matmuls/convolutions, fp32 reductions
where autocast keeps them)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from leangen.data.batch import Batch
from leangen.execution import ExecutionPolicy
from leangen.presets import get_preset
from leangen.train.objective import get_objective
from leangen.train.options import TrainOptions, resolve_options
from leangen.train.runtime import Runtime

#: |bf16 - fp32| <= RTOL * max(1, |fp32|) for every statistic of the step. bf16 keeps 8 bits of mantissa (a
#: relative error of 2^-8 per rounding); a few layers of rounding, and statistics measured after the step's
#: earlier phases already changed the weights, stay well inside 5 %.
RTOL = 0.05

TINY_GAN = {"G": {"channel_base": 16, "max_channels": 16, "z_dim": 32, "w_dim": 32, "mapping_layers": 2},
            "D": {"channel_base": 16, "max_channels": 16}}
ALL_GAN_PHASES = {"pl_weight": 2.0, "pl_interval": 1, "r1_interval": 1, "style_mixing": 0.5}


def images(seed: int, n: int = 2, res: int = 32) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, res, res), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def unconditional() -> Batch:
    return Batch(images(0))


def paired(classes: int) -> Batch:
    g = torch.Generator().manual_seed(2)
    return Batch(images(0), condition=torch.randint(0, classes, (2, 32, 32), generator=g))


def unpaired() -> Batch:
    return Batch(images(0), image_b=images(1))


def one_step(preset: str, precision: str, batch: Batch, overrides: Any, hparams: dict) -> tuple[dict[str, float], Any]:
    """Build the objective from seed 0 and run two steps from seed 1 at ``precision``; the second step's statistics
    (the first can hide the precision: likelihood models start at exactly uniform outputs)."""
    opts = resolve_options(TrainOptions(preset=preset, data="mem", batch=len(batch), steps=1, device="cpu",
                                        overrides=overrides, hparams=hparams))
    rt = Runtime(ExecutionPolicy(torch.device("cpu"), precision=precision))  # type: ignore[arg-type]
    torch.manual_seed(0)
    obj = get_objective(get_preset(preset).objective)()
    obj.build(get_preset(preset), rt, opts)
    torch.manual_seed(1)
    obj.train_step(batch, 0)
    stats = obj.train_step(batch, 1)
    assert all(v.dtype == torch.float32 for v in stats.values()), {k: v.dtype for k, v in stats.items()}
    return {k: float(v) for k, v in stats.items()}, obj


def teacher_dir(tmp_path: Path) -> str:
    torch.manual_seed(3)
    G = get_preset("stylegan2-tiny32").build("G")
    return str(G.save_pretrained(tmp_path / "teacher"))


CASES = [  # (preset, batch, overrides, hparams)
    ("stylegan2-tiny32", unconditional, TINY_GAN, ALL_GAN_PHASES),
    ("pixelfolder-tiny32", unconditional, None, {"r1_interval": 1}),
    ("cips-tiny32", unconditional, None, {"r1_interval": 1}),
    ("stylenat-tiny32", unconditional, None, {"r1_interval": 1}),
    ("spn-tiny-32", unconditional, None, {}),
    ("ar-tiny-32", unconditional, None, {}),
    ("spade-tiny32", lambda: paired(9), None, {}),
    ("resnet-tiny32", lambda: paired(9), None, {}),
    ("cyclegan-tiny32", unpaired, None, {}),
    ("stylegan2-tiny32-student", unconditional, None, {}),
]


@pytest.mark.parametrize("preset,batch,overrides,hparams", CASES, ids=[c[0] for c in CASES])
def test_bf16_step_matches_fp32(tmp_path: Path, preset: str, batch: Any, overrides: Any, hparams: dict) -> None:
    if preset.endswith("-student"):  # distillation: a saved teacher
        hparams = {**hparams, "teacher": teacher_dir(tmp_path)}
    b = batch()
    ref, _ = one_step(preset, "fp32", b, overrides or {}, hparams)
    got, obj = one_step(preset, "bf16", b, overrides or {}, hparams)
    assert set(got) == set(ref)
    off = {k: (ref[k], got[k]) for k in ref if abs(got[k] - ref[k]) > RTOL * max(1.0, abs(ref[k]))}
    assert not off, f"bf16 vs fp32 beyond {RTOL:.0%}: {off}"
    # Autocast changes the compute dtype only: weights, EMA copies and optimizer moments stay fp32.
    for name, module in obj.modules().items():
        assert all(p.dtype == torch.float32 for p in module.parameters()), name
    for opt in obj.optimizers().values():
        for state in opt.state.values():
            assert state["exp_avg"].dtype == torch.float32 and state["exp_avg_sq"].dtype == torch.float32
