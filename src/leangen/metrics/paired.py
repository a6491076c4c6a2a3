"""Metrics of a translator on validation pairs (consumes ``paired``): the label map of each pair is translated and
the output compared with the pair's target image.

Outputs are quantized to uint8 like saved PNGs (``x * 127.5 + 128``, truncated), targets are uint8: both sides on the
same 256 levels.

- ``psnr`` (dB, higher is better): per image 10 log10(255^2 / MSE) over all pixels and channels, capped at
  ``PSNR_CAP`` dB for identical images, then averaged over images.
- ``l1`` (lower is better): mean |output - target| over all pixels and channels, in [-1, 1] units (uint8 / 127.5).
- ``fid_pairs[<N>]`` / ``kid_pairs[<N>]`` (lower is better): FID / KID between the TF-Inception features of the
  translations of the first N validation label maps (all without N) and those of the same N targets; the
  StyleGAN feature protocol of the sampled metrics, covariance normalization included.

- ``miou`` / ``pixel_acc`` (higher is better): for data with a colour palette whose classes are colours (the
  built-in ``openmoji-seg``), each translation is segmented back into classes by the nearest palette colour and
  compared with its label map: mean intersection-over-union over the classes present in either, and the fraction
  of pixels whose class is recovered. The same recovery on the targets themselves is recorded in the protocol
  (``on_targets``; 1.0 for openmoji-seg, whose label maps are defined that way).

All of them use every pair of the data given (the validation split) unless a count says otherwise; one call
translates each label map once for all paired metrics.
"""
from __future__ import annotations

import math
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from leangen.metrics.base import MetricSpec, Outcome, register_metric
from leangen.metrics.batches import iter_pairs, num_unflipped
from leangen.metrics.context import EvalContext, evaluating, progress_bar
from leangen.metrics.feasibility import few_samples_warning
from leangen.metrics.inception import FEATURE_DIM, quantize_images
from leangen.metrics.reference import inception_protocol, reference_for, subset_label
from leangen.metrics.sampled import feature_scores
from leangen.models.base import Translator

PSNR_CAP = 100.0


def psnr_per_image(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of uint8 ``[B, C, H, W]`` images against uint8 targets: float64 ``[B]``, capped at ``PSNR_CAP``."""
    diff = output.double() - target.double()
    mse = diff.square().flatten(1).mean(1)
    psnr = 10.0 * torch.log10(255.0 ** 2 / mse.clamp_min(1e-300))
    return psnr.clamp_max(PSNR_CAP)


def translate(model: Any, labels: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 ``[B, 3, H, W]`` translations (on the CPU) of label maps ``[B, H, W]``."""
    if isinstance(model, Translator):  # plain modules (tests, wrappers) take the labels as they are
        model.check_labels(labels)
    return quantize_images(model(labels.to(device).long())).cpu()


class _Translations:
    """Per-pair errors (and features when a FID/KID needs them) of the first ``n`` pairs, computed once."""

    def __init__(self, model: Any, dataset: Any, n: int, n_feats: int, ctx: EvalContext) -> None:
        self.psnr = np.empty(n, dtype=np.float64)     # dB per pair
        self.abs_err = np.empty(n, dtype=np.float64)  # sum |output - target| per pair
        self.values_per_pair = 0
        self.features = np.empty((n_feats, FEATURE_DIM), dtype=np.float32) if n_feats else None
        done = 0
        with evaluating(model, ctx.seed, ctx.device), progress_bar(ctx.progress, "translations", n) as advance:
            for labels, targets in iter_pairs(dataset, np.arange(n), ctx.batch_size, ctx.num_workers):
                out = translate(model, labels, ctx.device)
                if out.shape != targets.shape:
                    raise ValueError(f"the translator makes {tuple(out.shape[1:])} images but the targets are "
                                     f"{tuple(targets.shape[1:])}")
                b = out.shape[0]
                self.psnr[done:done + b] = psnr_per_image(out, targets).numpy()
                self.abs_err[done:done + b] = (out.double() - targets.double()).abs().flatten(1).sum(1).numpy()
                self.values_per_pair = out[0].numel()
                if self.features is not None and done < n_feats:
                    k = min(b, n_feats - done)
                    self.features[done:done + k] = ctx.net()(out[:k]).cpu().numpy()
                done += b
                advance(b)


def evaluate_paired(specs: Sequence[MetricSpec], model: Any, dataset: Any, ctx: EvalContext) -> Iterator[Outcome]:
    """One ``Outcome`` per paired spec (psnr, l1, fid_pairs, kid_pairs), in order."""
    available = num_unflipped(dataset)
    counts = [s.count(available) for s in specs]
    n_feats = max([c for s, c in zip(specs, counts) if s.uses_inception], default=0)
    done: _Translations | None = None
    for spec, n in zip(specs, counts):
        if n < (2 if spec.uses_inception else 1):
            raise ValueError(f"metric {spec.name}: needs at least 2 pairs, the data has {available}")
        if done is None:
            done = _Translations(model, dataset, max(counts), n_feats, ctx)
        protocol: dict[str, Any] = {"num_pairs": n, "subset": subset_label(available, n, "first"),
                                    "quantize": "uint8 (outputs x*127.5+128 truncated; targets as stored)",
                                    "seed": ctx.seed}
        warnings: list[str] = []
        if spec.kind == "psnr":
            results = {spec.name: float(done.psnr[:n].mean())}
            protocol["psnr"] = f"per image 10*log10(255^2/MSE), capped at {PSNR_CAP:g} dB, mean over images"
        elif spec.kind == "l1":
            results = {spec.name: float(done.abs_err[:n].sum() / (n * done.values_per_pair) / 127.5)}
            protocol["l1"] = "mean |output - target| over pixels and channels, in [-1, 1] units (uint8 / 127.5)"
        else:
            assert done.features is not None
            ref = reference_for(dataset, n, ctx, need_features=spec.needs_real_features, subset="first")
            results, extra = feature_scores(spec, ref, done.features[:n], ctx)
            protocol.update(inception_protocol(ctx), num_gen=n, num_real=ref.num_real, **extra,
                            pairs="translations of the first N label maps vs the same N targets",
                            reference_cache=None if ref.cache_file is None else str(ref.cache_file))
            warning = few_samples_warning(spec, n, ref.num_real)
            warnings += [warning] if warning else []
        if spec.num_images is not None and spec.num_images > available:
            warnings.append(f"{spec.name}: the data has only {available} pairs; used all of them")
        if not all(math.isfinite(v) for v in results.values()):
            warnings.append(f"{spec.name}: not finite")
        yield Outcome(results, protocol, warnings)


def confusion(pred: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """int64 ``[k, k]`` counts of (true class, predicted class) over label maps ``[B, H, W]``."""
    idx = labels.reshape(-1).long() * k + pred.reshape(-1).long()
    return torch.bincount(idx, minlength=k * k).reshape(k, k)


def segmentation_scores(conf: torch.Tensor) -> tuple[float, float]:
    """``(mean IoU over classes present in the truth or the prediction, pixel accuracy)`` of a confusion matrix."""
    conf = conf.double()
    tp = conf.diag()
    union = conf.sum(0) + conf.sum(1) - tp
    present = union > 0
    miou = float((tp[present] / union[present]).mean()) if bool(present.any()) else float("nan")
    return miou, float(tp.sum() / conf.sum().clamp_min(1))


def _palette_segmentation(spec: MetricSpec, model: Any, dataset: Any, ctx: EvalContext) -> Outcome:
    from leangen.data.paired import nearest_class

    palette = getattr(dataset, "palette", None)
    if not palette:
        raise ValueError(f"metric {spec.name} needs data whose classes are palette colours (e.g. openmoji-seg); "
                         f"this data has no palette")
    k = len(palette)
    table = torch.tensor(palette)
    n = spec.count(num_unflipped(dataset))
    conf_out = torch.zeros(k, k, dtype=torch.long)
    conf_tgt = torch.zeros(k, k, dtype=torch.long)
    with evaluating(model, ctx.seed, ctx.device), progress_bar(ctx.progress, "translations", n) as advance:
        for labels, targets in iter_pairs(dataset, np.arange(n), ctx.batch_size, ctx.num_workers):
            out = translate(model, labels, ctx.device)
            conf_out += confusion(nearest_class(out, table), labels, k)
            conf_tgt += confusion(nearest_class(targets, table), labels, k)
            advance(labels.shape[0])
    which = 0 if spec.kind == "miou" else 1
    value, on_targets = segmentation_scores(conf_out)[which], segmentation_scores(conf_tgt)[which]
    protocol = {"num_pairs": n, "subset": subset_label(num_unflipped(dataset), n, "first"), "classes": k,
                "segmentation": "nearest palette colour (squared RGB) of each uint8 output pixel",
                "on_targets": on_targets, "seed": ctx.seed}
    return Outcome({spec.name: value}, protocol, [] if math.isfinite(value) else [f"{spec.name}: not finite"])


for _kind in ("miou", "pixel_acc"):
    register_metric(MetricSpec(_kind, _kind, consumes="paired", higher_is_better=True,
                               compute=_palette_segmentation))

__all__ = ["PSNR_CAP", "psnr_per_image", "translate", "evaluate_paired", "confusion", "segmentation_scores"]
