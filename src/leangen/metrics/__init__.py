"""Evaluation metrics: FID / KID / precision-recall on TF-Inception features (one named protocol), efficiency.

Submodules are imported on first use so that ``import leangen.metrics`` stays cheap:
``inception`` (feature network), ``fid`` (statistics and the pure metric functions), ``registry`` (StyleGAN-style
named metrics, ``calc_metric`` / ``report_metric``).
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
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_LAZY)
