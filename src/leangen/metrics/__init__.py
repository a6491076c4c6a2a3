"""Evaluation metrics of every model kind: FID / KID / precision-recall of generator samples on TF-Inception
features (one named protocol), bits/dim of likelihood models, PSNR / L1 / FID of translations, student vs teacher.

Submodules are imported on first use so that ``import leangen.metrics`` stays cheap:
``inception`` (feature network), ``fid`` (statistics and the pure metric functions), ``base`` (metric specs: what
each consumes and its direction; the open registry of names), ``registry`` (the façade: ``calc_metrics``,
``metric_info``, ``report_metric``), ``reference`` (cached real statistics), ``sampled`` / ``likelihood`` /
``paired`` / ``teacher`` (one per kind of input), ``feasibility`` (memory and sample-size checks), ``records``. Efficiency (MACs, memory, latency) is ``leangen.profile``.
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "InceptionFeatures": "inception", "load_inception": "inception", "quantize_images": "inception",
    "weights_sha256": "inception",
    "fid_from_features": "fid", "kid_from_features": "fid", "pr_from_features": "fid",
    "frechet_distance": "fid", "feature_stats": "fid",
    "calc_metric": "registry", "calc_metrics": "registry", "report_metric": "registry", "parse_metric": "registry",
    "metric_info": "registry", "register_metric": "registry", "MetricSpec": "registry",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_LAZY)
