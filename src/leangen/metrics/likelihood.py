"""Bits per dimension of a likelihood model on (validation) images (consumes ``log_likelihood``).

``bpd``: -log2 p(x) / (C * H * W), averaged over *every* image of the data given (the validation split, in dataset
order): exact, no sampling. ``bpd<N>``: the first N images. Models of ``bits < 8`` see the data reduced as they were
trained on it, ``images >> (8 - bits)``; the record says so. Lower is better.
"""
from __future__ import annotations

import math
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from leangen.metrics.base import MetricSpec, Outcome
from leangen.models.pretrained import capability
from leangen.metrics.batches import iter_images, num_unflipped
from leangen.metrics.context import EvalContext, evaluating, progress_bar


def _check_shape(images: torch.Tensor, model: Any) -> None:
    res, ch = capability(model, "img_resolution"), capability(model, "img_channels")
    if res is not None and tuple(images.shape[1:]) != (ch, res, res):
        raise ValueError(f"dataset images are {tuple(images.shape[1:])} but the model takes ({ch}, {res}, {res})")


def negative_log_likelihoods(model: Any, dataset: Any, num_images: int, ctx: EvalContext) -> tuple[np.ndarray, int]:
    """``(-log p(x) in nats, float64 [num_images], dims per image)`` of the first ``num_images`` images."""
    bits = int(capability(model, "bits"))
    out = np.empty(num_images, dtype=np.float64)
    dims, done = 0, 0
    with evaluating(model, ctx.seed, ctx.device), progress_bar(ctx.progress, "log-likelihood", num_images) as advance:
        for images in iter_images(dataset, np.arange(num_images), ctx.batch_size, ctx.num_workers):
            _check_shape(images, model)
            if bits < 8:
                images = images >> (8 - bits)  # the model's alphabet: 0 .. 2**bits - 1
            log_p = model.log_prob(images.to(ctx.device))
            if tuple(log_p.shape) != (images.shape[0],):
                raise ValueError(f"log_prob must return one value per image [B], got {tuple(log_p.shape)}")
            out[done:done + images.shape[0]] = -log_p.double().cpu().numpy()
            done += images.shape[0]
            dims = images[0].numel()
            advance(images.shape[0])
    return out, dims


def evaluate_likelihood(specs: Sequence[MetricSpec], model: Any, dataset: Any,
                        ctx: EvalContext) -> Iterator[Outcome]:
    """One ``Outcome`` per ``bpd``-kind spec; the log-likelihoods of the largest count are computed once."""
    available = num_unflipped(dataset)
    bits = int(capability(model, "bits"))
    nll: np.ndarray | None = None
    dims = 0
    for spec in specs:
        n = spec.count(available)
        if n < 1:
            raise ValueError(f"metric {spec.name}: the dataset is empty")
        if nll is None:
            nll, dims = negative_log_likelihoods(model, dataset, max(s.count(available) for s in specs), ctx)
        value = float(nll[:n].sum() / (n * dims * math.log(2.0)))
        protocol = {"num_images": n, "subset": "all" if n >= available else f"first {n}", "bits": bits,
                    "dims": dims, "reduce": f"images >> {8 - bits}" if bits < 8 else "none",
                    "units": "-log2 p(x) / dims, averaged over images", "order": "dataset order"}
        warnings = []
        if spec.num_images is not None and spec.num_images > available:
            warnings.append(f"{spec.name}: the data has only {available} images; used all of them")
        if not math.isfinite(value):
            warnings.append(f"{spec.name}: some images have zero probability under the model (log p = -inf)")
        yield Outcome({spec.name: value}, protocol, warnings)


__all__ = ["negative_log_likelihoods", "evaluate_likelihood"]
