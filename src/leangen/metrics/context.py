"""What every metric computation shares: the evaluation settings, the feature network (loaded on first use),
model helpers (kind, device, eval mode, seeded RNG) and a progress bar."""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Literal

import torch

from leangen.metrics.inception import InceptionFeatures, ResizeMode, load_inception, weights_sha256
from leangen.models.pretrained import model_kind  # noqa: F401  (re-exported: metrics read the kind from here)

CovMode = Literal["biased", "unbiased"]
# What each FID covariance normalization is, as records and cache keys name it.
COV_PROTOCOL: dict[str, str] = {"biased": "biased (N), as StyleGAN2-ADA",
                                "unbiased": "unbiased (N-1), as clean-fid / pytorch-fid"}
COV_DDOF: dict[str, int] = {"biased": 0, "unbiased": 1}


@dataclass
class EvalContext:
    """Settings of one ``calc_metrics`` call. ``net()`` / ``weights_sha()`` load TF-Inception only when a metric
    needs it (bits/dim and PSNR never do)."""

    device: torch.device
    batch_size: int = 64
    seed: int = 0
    progress: bool = True
    num_workers: int = 0
    truncation_psi: float = 1.0
    noise_mode: str = "random"
    resize: ResizeMode = "legacy_tensorflow"
    cov: CovMode = "biased"
    inception_weights: str | os.PathLike | None = None
    cache_dir: str | os.PathLike | None = None
    teacher: Any = None
    _net: InceptionFeatures | None = field(default=None, repr=False)

    def net(self) -> InceptionFeatures:
        if self._net is None:
            self._net = load_inception(self.device, self.inception_weights, resize=self.resize,
                                       cache_dir=self.cache_dir)
        return self._net

    def weights_sha(self) -> str:
        return weights_sha256(self.inception_weights, self.cache_dir)

    @property
    def ddof(self) -> int:
        return COV_DDOF[self.cov]



def model_device(model: Any) -> torch.device | None:
    """Where the first parameter (or buffer) of ``model`` is; None for parameterless or non-module models."""
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            return p.device
        for b in model.buffers():
            return b.device
    return None


@contextlib.contextmanager
def evaluating(model: Any, seed: int, device: torch.device) -> Iterator[None]:
    """``model.eval()``, no grads, and the global RNGs seeded with ``seed`` inside ``fork_rng`` (random noise and
    dropout become reproducible, the caller's stream is untouched); restores training mode afterwards."""
    fork_devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    was_training = model.training if isinstance(model, torch.nn.Module) else None  # any callable may be measured
    if isinstance(model, torch.nn.Module):
        model.eval()
    try:
        with torch.random.fork_rng(devices=fork_devices), torch.no_grad():
            torch.manual_seed(int(seed))
            yield
    finally:
        if isinstance(model, torch.nn.Module) and was_training:
            model.train(True)


@contextlib.contextmanager
def progress_bar(enabled: bool, description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr (rich) yielding ``advance(n)``; a no-op when disabled."""
    if not enabled:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True)) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


__all__ = ["CovMode", "COV_PROTOCOL", "COV_DDOF", "EvalContext", "model_kind", "model_device", "evaluating",
           "progress_bar"]
