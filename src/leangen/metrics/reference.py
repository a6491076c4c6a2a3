"""Inception statistics of real images (the reference side of FID/KID/PR), cached on disk.

Statistics (float64 ``mu``/``sigma``, clean-fid compatible keys, plus the float32 feature matrix for KID/PR) are
saved as ``.npz`` under ``<cache>/gan-metrics/``, keyed by the dataset's *content* fingerprint (see
``ImageDataset.fingerprint``: a hash of the pixels or file bytes, so replacing images by others of the same names and
sizes never reuses stale statistics), the number of real images and how they are chosen, the covariance
normalization and the feature protocol (network, weights hash, resize). Datasets without ``fingerprint()`` are
never cached: their identity is unknown.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from leangen.metrics.batches import data_fingerprint, iter_images, num_unflipped
from leangen.metrics.context import COV_DDOF, COV_PROTOCOL, CovMode, EvalContext, progress_bar
from leangen.metrics.fid import RunningStats
from leangen.metrics.inception import FEATURE_DIM, FEATURE_NET, RESIZE_PROTOCOL, InceptionFeatures, cache_root

_CACHE_VERSION = 2  # 2: content fingerprints, covariance normalization in the key
REAL_SUBSET_SEED = 0  # fixed (not the user's seed) so that a reference subset and its cache are reusable
Subset = Literal["random", "first"]


@dataclass
class RealReference:
    """Statistics of ``num_real`` real images: float64 ``mu [D]``, ``sigma [D, D]``, optional float32 features
    ``[num_real, D]``; ``key`` is the dataset fingerprint behind them (None: not cached)."""

    mu: np.ndarray
    sigma: np.ndarray
    num_real: int
    features: np.ndarray | None
    cache_file: Path | None
    from_cache: bool
    key: str | None = None


def inception_protocol(ctx: EvalContext) -> dict[str, Any]:
    """The feature protocol of ``ctx`` as records and cache keys spell it (FID records add ``cov``)."""
    return {"feature_net": FEATURE_NET, "weights_sha256": ctx.weights_sha(), "resize": RESIZE_PROTOCOL[ctx.resize],
            "quantize": "uint8", "xflip": False}


def real_indices(available: int, num_real: int, subset: Subset = "random") -> np.ndarray:
    """Which real images: all, the first ``num_real``, or a fixed pseudo-random subset (sorted)."""
    if num_real >= available or subset == "first":
        return np.arange(min(num_real, available))
    idx = np.random.RandomState(REAL_SUBSET_SEED).choice(available, num_real, replace=False)
    return np.sort(idx)  # sorted: sequential reads of zips/folders


def subset_label(available: int, num_real: int, subset: Subset = "random") -> str:
    """How ``real_indices`` chose, for the record."""
    if num_real >= available:
        return "all"
    return f"first {num_real}" if subset == "first" else f"random(seed={REAL_SUBSET_SEED})"


def _cache_file(dataset: Any, fingerprint: str, num_real: int, protocol: dict[str, Any], cov: CovMode,
                subset: Subset, root: Path) -> Path:
    key = {"v": _CACHE_VERSION, "fingerprint": fingerprint, "num_real": num_real, "subset": subset,
           "real_subset_seed": REAL_SUBSET_SEED, "protocol": protocol, "cov": COV_PROTOCOL[cov]}
    digest = hashlib.md5(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(getattr(dataset, "name", type(dataset).__name__)))[:40]
    return root / "gan-metrics" / f"{name}-{fingerprint[:16]}-n{num_real}-{digest}.npz"


def _save(path: Path, ref: RealReference, protocol: dict[str, Any]) -> None:
    from leangen.utils.files import atomic_path

    arrays: dict[str, np.ndarray] = {"mu": ref.mu, "sigma": ref.sigma, "num_real": np.array(ref.num_real),
                                     "protocol": np.array(json.dumps(protocol, sort_keys=True)),
                                     "fingerprint": np.array(ref.key or "")}
    if ref.features is not None:
        arrays["features"] = ref.features.astype(np.float32)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a path
            np.savez(f, **arrays)


def _load(path: Path, need_features: bool, key: str) -> RealReference | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            if need_features and "features" not in z.files:
                return None
            feats = z["features"] if "features" in z.files else None
            return RealReference(z["mu"], z["sigma"], int(z["num_real"]), feats, path, True, key)
    except (OSError, ValueError, KeyError):
        return None  # unreadable (e.g. truncated by a crash elsewhere): recompute and overwrite


def real_reference(dataset: Any, num_real: int, net: InceptionFeatures, *, protocol: dict[str, Any],
                   need_features: bool, batch_size: int = 64, cache_dir: str | os.PathLike | None = None,
                   num_workers: int = 0, progress: bool = True, cov: CovMode = "biased",
                   subset: Subset = "random") -> RealReference:
    """Feature statistics of ``num_real`` real images of ``dataset`` (``subset``: a fixed pseudo-random subset, or
    the first ones), with covariance ``cov`` (``"biased"``: divide by N as StyleGAN2-ADA), cached on disk."""
    available = num_unflipped(dataset)
    num_real = min(num_real, available)
    if num_real < 2:
        raise ValueError(f"need at least 2 real images, the dataset has {available}")
    fingerprint = data_fingerprint(dataset)
    path = None
    if fingerprint is not None:
        path = _cache_file(dataset, fingerprint, num_real, protocol, cov, subset, cache_root(cache_dir))
        if path.is_file():
            cached = _load(path, need_features, fingerprint)
            if cached is not None:
                return cached
    stats = RunningStats(FEATURE_DIM, keep=num_real if need_features else 0)
    with progress_bar(progress, "real images", num_real) as advance:
        for images in iter_images(dataset, real_indices(available, num_real, subset), batch_size, num_workers):
            stats.update(net(images).cpu().numpy())
            advance(images.shape[0])
    mu, sigma = stats.mean_cov(COV_DDOF[cov])
    ref = RealReference(mu, sigma, stats.n, stats.features if need_features else None, path, False, fingerprint)
    if path is not None:
        _save(path, ref, protocol)
    return ref


def reference_for(dataset: Any, num_real: int, ctx: EvalContext, *, need_features: bool,
                  subset: Subset = "random") -> RealReference:
    """``real_reference`` with the settings of ``ctx``."""
    return real_reference(dataset, num_real, ctx.net(), protocol=inception_protocol(ctx), need_features=need_features,
                          batch_size=ctx.batch_size, cache_dir=ctx.cache_dir, num_workers=ctx.num_workers,
                          progress=ctx.progress, cov=ctx.cov, subset=subset)


__all__ = ["RealReference", "REAL_SUBSET_SEED", "inception_protocol", "real_indices", "subset_label",
           "real_reference", "reference_for"]
