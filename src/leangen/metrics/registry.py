"""Named metrics of any model kind: ``calc_metrics(names, model, dataset)`` -> one record per name.

Each name's spec (``metric_info(name)``, see ``leangen.metrics.base``) says what it consumes (generator
``samples``, ``log_likelihood`` of validation images, ``paired`` translations, ``teacher_student`` outputs) and
whether higher is better. ``calc_metrics`` checks that the model (and the data, and the teacher) fit every name and
that the sizes fit in memory *before* computing anything, then hands each group of names to its module:
``sampled`` (fid/kid/pr, StyleGAN's names), ``likelihood`` (bpd), ``paired`` (psnr, l1, fid_pairs, kid_pairs),
``teacher`` (teacher_psnr). Records are described in ``leangen.metrics.records``; ``report_metric(record, run_dir)``
appends one to ``<run_dir>/metric-<name>.jsonl``.

This module is the public façade: the training loop and ``leangen eval`` import from here.
"""
from __future__ import annotations

import os
import time
import warnings
from typing import Any, Callable, Iterator, Sequence

import torch

from leangen.metrics.base import (METRICS, MODEL_KINDS, MetricSpec, Outcome, list_metrics, metric_info, parse_metric,
                                  register_family, register_metric, register_metric_pattern)
from leangen.metrics.batches import data_fingerprint, is_paired, num_unflipped
from leangen.metrics.context import COV_PROTOCOL, CovMode, EvalContext, model_device, model_kind
from leangen.metrics.feasibility import check_memory
from leangen.metrics.inception import ResizeMode
from leangen.metrics.likelihood import evaluate_likelihood
from leangen.metrics.paired import evaluate_paired
from leangen.metrics.records import MetricWarning, make_record, report_metric
from leangen.metrics.reference import RealReference, real_reference
from leangen.metrics.sampled import evaluate_samples, generated_features
from leangen.metrics.teacher import check_teacher, evaluate_teacher, teacher_count
from leangen.utils.timefmt import format_time

Evaluator = Callable[[Sequence[MetricSpec], Any, Any, EvalContext], Iterator[Outcome]]
# How each kind of input is computed; a spec with its own ``compute`` bypasses these.
EVALUATORS: dict[str, Evaluator] = {"samples": evaluate_samples, "log_likelihood": evaluate_likelihood,
                                    "paired": evaluate_paired, "teacher_student": evaluate_teacher}


def _check_fit(spec: MetricSpec, model: Any, dataset: Any, teacher: Any, where: str | None) -> None:
    kind, need = model_kind(model), MODEL_KINDS[spec.consumes]  # type: ignore[index]
    if kind not in need:
        holds = f"{where} holds a {kind}" if where else f"got a {kind} ({type(model).__name__})"
        raise ValueError(f"metric {spec.name} needs a {' or '.join(need)} model; {holds}")
    if spec.consumes == "teacher_student":
        check_teacher(model, teacher, spec.name)
        if kind == "generator":
            return
    if dataset is None:
        what = "real images" if spec.consumes == "samples" else "validation split"
        raise ValueError(f"metric {spec.name} needs data (the {what})")
    if (spec.consumes == "paired" or kind == "translator") and not is_paired(dataset):
        from leangen.tasks import is_unpaired

        what = "two unpaired domains (no target per input)" if is_unpaired(dataset) else "images only"
        raise ValueError(f"metric {spec.name} needs label map -> image pairs; the data holds {what}")


def _sizes(spec: MetricSpec, model: Any, dataset: Any) -> tuple[int, int]:
    """``(outputs, references)`` counts ``spec`` works on."""
    if spec.consumes == "samples":
        return spec.num_gen, spec.num_real(num_unflipped(dataset))
    if spec.consumes == "teacher_student":
        n = teacher_count(spec, model, dataset)
        return n, n
    n = spec.count(num_unflipped(dataset))
    return n, n


def plan_metrics(names: Sequence[str], model: Any, dataset: Any = None, *, teacher: Any = None,
                 snapshot: str | None = None) -> list[MetricSpec]:
    """Specs of ``names`` after every check ``calc_metrics`` makes before computing: known names, a model (and
    teacher, and data) of the kind each consumes, sizes that fit in memory. One-line ``ValueError`` otherwise."""
    specs = [parse_metric(n) for n in names]
    if not specs:
        raise ValueError("no metrics given")
    for spec in specs:
        if spec.compute is None and spec.consumes not in EVALUATORS:
            raise ValueError(f"metric {spec.name}: nothing computes {spec.consumes!r} metrics")
        _check_fit(spec, model, dataset, teacher, snapshot)
        if spec.uses_inception and dataset is not None:  # covariances and kernels need two of each
            n_out, n_ref = _sizes(spec, model, dataset)
            if min(n_out, n_ref) < 2:
                raise ValueError(f"metric {spec.name} needs at least 2 images on each side; the data has "
                                 f"{num_unflipped(dataset)}")
    check_memory([(s, *_sizes(s, model, dataset)) for s in specs if s.uses_inception])
    return specs


def describe_metric(spec: MetricSpec, model: Any, dataset: Any = None) -> str:
    """One line: what computing ``spec`` would do (for ``leangen eval --dry-run``)."""
    n_out, n_ref = _sizes(spec, model, dataset)
    direction = "higher" if spec.higher_is_better else "lower"
    what = {"samples": f"{n_out} generated vs {n_ref} real images",
            "log_likelihood": f"{n_out} images",
            "paired": f"{n_out} translated pairs",
            "teacher_student": f"{n_out} {'seeds' if model_kind(model) == 'generator' else 'label maps'}"}
    return f"{spec.name}: consumes {spec.consumes}, {direction} is better, {what.get(spec.consumes, '')}".rstrip(", ")


def calc_metrics(names: Sequence[str], model: Any, dataset: Any = None, *, device: str | torch.device | None = None,
                 teacher: Any = None, batch_size: int = 64, inception_weights: str | os.PathLike | None = None,
                 cache_dir: str | os.PathLike | None = None, seed: int = 0, progress: bool = True,
                 resize: ResizeMode = "legacy_tensorflow", truncation_psi: float = 1.0, noise_mode: str = "random",
                 cov: CovMode = "biased", snapshot: str | None = None, split: str | None = None,
                 num_workers: int = 0) -> list[dict[str, Any]]:
    """Compute metrics ``names`` of ``model`` on ``dataset``; one record per name, in order.

    ``model``: a generator (``z_dim``, ``G(z, truncation_psi=, noise_mode=) -> [N, 3, R, R]`` in [-1, 1]), a
    likelihood model (``log_prob(uint8 [B, C, H, W]) -> [B]`` nats, ``bits``) or a translator
    (``model(int64 [B, H, W]) -> [B, 3, H, W]`` in [-1, 1]), on ``device`` (default: where its parameters are).
    ``dataset``: real images for sampled metrics (items uint8 ``[3, R, R]``, ``(image, label)`` or dicts), the
    validation split for the others (paired items ``{"image", "condition"}``); ``fingerprint()`` (a content hash)
    keys the reference-statistics cache and is recorded. ``teacher``: the reference of ``teacher_*`` metrics.
    ``cov``: FID covariance, ``"biased"`` (divide by N, StyleGAN2-ADA) or ``"unbiased"`` (N - 1).
    ``split``: recorded in the protocol. ``inception_weights`` / ``cache_dir``: see ``load_inception``.
    Metrics of the same size share generated features and real statistics. Raises a one-line ``ValueError`` when
    a name is unknown, does not fit the model, data or teacher, or would not fit in memory.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if cov not in COV_PROTOCOL:
        raise ValueError(f"cov must be one of {', '.join(COV_PROTOCOL)}, got {cov!r}")
    specs = plan_metrics(names, model, dataset, teacher=teacher, snapshot=snapshot)
    if device is None:
        device = model_device(model) or torch.device("cpu")
    device = torch.device(device)
    m_dev = model_device(model)
    if m_dev is not None and m_dev.type != device.type:
        raise ValueError(f"the model is on {m_dev} but device={device}; move it first (model.to(device))")
    ctx = EvalContext(device, batch_size=batch_size, seed=seed, progress=progress, num_workers=num_workers,
                      truncation_psi=truncation_psi, noise_mode=noise_mode, resize=resize, cov=cov,
                      inception_weights=inception_weights, cache_dir=cache_dir, teacher=teacher)
    fingerprint = data_fingerprint(dataset) if dataset is not None else None

    outcomes: dict[int, tuple[Outcome, float]] = {}
    groups: dict[str, list[int]] = {}
    for i, spec in enumerate(specs):
        if spec.compute is not None:
            t0 = time.time()
            outcomes[i] = (spec.compute(spec, model, dataset, ctx), time.time() - t0)
        else:
            groups.setdefault(spec.consumes, []).append(i)  # type: ignore[arg-type]
    for consumes, idx in groups.items():
        t0 = time.time()
        for i, outcome in zip(idx, EVALUATORS[consumes]([specs[i] for i in idx], model, dataset, ctx)):
            outcomes[i] = (outcome, time.time() - t0)  # shared work is charged to the first metric needing it
            t0 = time.time()
    records = []
    for i, spec in enumerate(specs):
        outcome, seconds = outcomes[i]
        for message in outcome.warnings:  # also in the record: warnings are easy to miss in a long run's log
            warnings.warn(message, MetricWarning, stacklevel=2)
        records.append(make_record(spec, outcome, seconds=seconds, device=device, snapshot=snapshot,
                                   fingerprint=fingerprint, split=split))
    return records


def calc_metric(name: str, model: Any, dataset: Any = None, **kwargs: Any) -> dict[str, Any]:
    """``calc_metrics([name], model, dataset, **kwargs)[0]``: the record of one metric."""
    return calc_metrics([name], model, dataset, **kwargs)[0]


__all__ = [
    "MetricSpec", "Outcome", "METRICS", "register_metric", "register_metric_pattern", "register_family", "parse_metric",
    "metric_info", "list_metrics", "format_time", "RealReference", "real_reference", "generated_features", "plan_metrics",
    "describe_metric", "calc_metrics", "calc_metric", "report_metric", "make_record", "MetricWarning", "EVALUATORS",
]
