"""Distillation metrics (consumes ``teacher_student``): the student against its teacher on the same inputs.

``teacher_psnr[<N>]`` (dB, higher is better): PSNR of the student's uint8-quantized outputs against the teacher's,
per image then averaged (see ``leangen.metrics.paired.psnr_per_image``). Same inputs for both:

- generators: latents of seeds 0..N-1 (one CPU generator per seed, ``latents_for_seeds``; ``DEFAULT_TEACHER_SEEDS``
  without N), ``noise_mode="const"``, the call's truncation psi;
- translators: the first N label maps of the data given (the validation split; all of them without N).
"""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np
import torch

from leangen.metrics.base import DEFAULT_TEACHER_SEEDS, MetricSpec, Outcome
from leangen.metrics.batches import iter_pairs, num_unflipped
from leangen.metrics.context import EvalContext, evaluating, model_device, model_kind, progress_bar
from leangen.metrics.paired import PSNR_CAP, psnr_per_image, translate
from leangen.metrics.inception import quantize_images
from leangen.models.pretrained import capability, model_label
from leangen.utils.seeds import latents_for_seeds


def check_teacher(student: Any, teacher: Any, name: str) -> None:
    """``ValueError`` (one line) when ``teacher`` is missing or cannot be compared with ``student``."""
    if teacher is None:
        raise ValueError(f"metric {name} compares a student with its teacher: pass teacher= (leangen eval --teacher)")
    s_kind, t_kind = model_kind(student), model_kind(teacher)
    if s_kind != t_kind:
        raise ValueError(f"metric {name}: the student is a {s_kind} but the teacher a {t_kind}")
    for attr in ("z_dim", "num_classes", "img_resolution"):
        s, t = capability(student, attr), capability(teacher, attr)
        if s is not None and t is not None and s != t:
            raise ValueError(f"metric {name}: student and teacher differ in {attr} ({s} vs {t})")


def _generator_inputs(n: int, z_dim: int, batch_size: int) -> Iterator[torch.Tensor]:
    for start in range(0, n, batch_size):
        yield latents_for_seeds(list(range(start, min(n, start + batch_size))), z_dim)


def _psnr_values(student: Any, teacher: Any, dataset: Any, n: int, ctx: EvalContext) -> np.ndarray:
    t_dev = model_device(teacher) or ctx.device
    out = np.empty(n, dtype=np.float64)
    done = 0
    is_gen = model_kind(student) == "generator"
    with evaluating(student, ctx.seed, ctx.device), evaluating(teacher, ctx.seed, t_dev), \
            progress_bar(ctx.progress, "student vs teacher", n) as advance:
        if is_gen:
            kw = {"truncation_psi": ctx.truncation_psi, "noise_mode": "const"}
            inputs = _generator_inputs(n, int(student.z_dim), ctx.batch_size)
            pairs = ((quantize_images(student(z.to(ctx.device), **kw)).cpu(),
                      quantize_images(teacher(z.to(t_dev), **kw)).cpu()) for z in inputs)
        else:
            maps = (labels for labels, _ in iter_pairs(dataset, np.arange(n), ctx.batch_size, ctx.num_workers))
            pairs = ((translate(student, labels, ctx.device), translate(teacher, labels, t_dev)) for labels in maps)
        for s_img, t_img in pairs:
            if s_img.shape != t_img.shape:
                raise ValueError(f"student makes {tuple(s_img.shape[1:])} images, teacher {tuple(t_img.shape[1:])}")
            out[done:done + s_img.shape[0]] = psnr_per_image(s_img, t_img).numpy()
            done += s_img.shape[0]
            advance(s_img.shape[0])
    return out


def teacher_count(spec: MetricSpec, student: Any, dataset: Any) -> int:
    """Inputs ``spec`` compares on: seeds for generators, label maps of ``dataset`` for translators."""
    if model_kind(student) == "generator":
        return spec.num_images if spec.num_images is not None else DEFAULT_TEACHER_SEEDS
    if dataset is None:
        raise ValueError(f"metric {spec.name} on a translator needs validation label maps: pass the data")
    return spec.count(num_unflipped(dataset))


def evaluate_teacher(specs: Sequence[MetricSpec], student: Any, dataset: Any, ctx: EvalContext) -> Iterator[Outcome]:
    """One ``Outcome`` per ``teacher_psnr`` spec; outputs of the largest count are compared once."""
    teacher = ctx.teacher
    for spec in specs:
        check_teacher(student, teacher, spec.name)
    counts = [teacher_count(s, student, dataset) for s in specs]
    values: np.ndarray | None = None
    is_gen = model_kind(student) == "generator"
    for spec, n in zip(specs, counts):
        if n < 1:
            raise ValueError(f"metric {spec.name}: no inputs to compare on")
        if values is None:
            values = _psnr_values(student, teacher, dataset, max(counts), ctx)
        inputs = (f"seeds 0..{n - 1} (latents_for_seeds), noise_mode const" if is_gen else
                  f"first {n} label maps of the data")
        protocol = {"num_inputs": n, "inputs": inputs, "reference": "teacher outputs, uint8-quantized",
                    "teacher": model_label(teacher),
                    "psnr": f"per image 10*log10(255^2/MSE), capped at {PSNR_CAP:g} dB, mean over images"}
        if is_gen:
            protocol["truncation_psi"] = ctx.truncation_psi
        yield Outcome({spec.name: float(values[:n].mean())}, protocol)


__all__ = ["check_teacher", "teacher_count", "evaluate_teacher"]
