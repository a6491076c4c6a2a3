"""StyleGAN-style named metrics: ``fid50k_full``, ``kid50k_full``, ``pr50k3_full``, ``fid2k``, ..., any ``fid<N>[k]``.

``calc_metric(name, G, dataset, device=...)`` draws ``num_gen`` images from ``G`` (seeded CPU latents), extracts
TF-Inception features of generated and real images (see ``leangen.metrics.inception`` for the protocol), computes the
metric and returns a record like StyleGAN's ``metric-<name>.jsonl`` lines, with the protocol spelled out;
``report_metric(record, run_dir)`` appends it to ``<run_dir>/metric-<name>.jsonl``.

Names:

- ``<kind><N>[k]`` with kind ``fid``, ``kid`` or ``pr``: N (x1000 with ``k``) generated images against
  min(N, all) real images (a fixed pseudo-random subset when the dataset is larger). ``pr`` takes the neighbourhood
  size after the ``k``: ``pr50k3`` (default 3).
- suffix ``_full``: against *all* real images (KID caps them at 1M, PR at 200k, as StyleGAN does).

Reference statistics (float64 ``mu``/``sigma``, clean-fid compatible keys, plus the feature matrix for KID/PR) are
cached as ``.npz`` under ``<cache>/gan-metrics/`` keyed by (dataset fingerprint, number of real images, protocol,
weights hash) when the dataset has a ``fingerprint()`` method.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Sequence

import numpy as np
import torch

from leangen.utils.timefmt import format_time
from leangen.metrics.fid import (RunningStats, auto_fid_method, fid_against_stats, kid_from_features,
                                 pr_from_features)
from leangen.metrics.inception import (FEATURE_DIM, FEATURE_NET, RESIZE_PROTOCOL, InceptionFeatures, ResizeMode,
                                       cache_root, load_inception, quantize_images, weights_sha256)

MetricKind = Literal["fid", "kid", "pr"]
_CACHE_VERSION = 1
_REAL_SUBSET_SEED = 0  # fixed (not the user's seed) so that a reference subset and its cache are reusable


@dataclass(frozen=True)
class MetricSpec:
    """What a metric name means. ``max_real=None``: all real images."""

    name: str
    kind: MetricKind
    num_gen: int
    max_real: int | None
    nhood: int = 3  # precision/recall: k of the k-NN radii
    num_subsets: int = 100  # KID
    max_subset_size: int = 1000  # KID

    @property
    def needs_real_features(self) -> bool:
        return self.kind in ("kid", "pr")

    def num_real(self, available: int) -> int:
        return available if self.max_real is None else min(self.max_real, available)


class _MetricTable(dict):
    """Registered metrics by name; ``in`` also accepts any name the generic parser understands (``fid200``)."""

    def __contains__(self, name: object) -> bool:
        if dict.__contains__(self, name):
            return True
        try:
            parse_metric(str(name))
        except ValueError:
            return False
        return True

    def __missing__(self, name: str) -> MetricSpec:
        return parse_metric(name)


METRICS: _MetricTable = _MetricTable()


def register_metric(spec: MetricSpec) -> MetricSpec:
    """Add (or replace) a named metric."""
    METRICS[spec.name] = spec
    return spec


# StyleGAN's names (metric_main.py) and the small ones for CPU-sized runs.
register_metric(MetricSpec("fid50k_full", "fid", 50_000, None))
register_metric(MetricSpec("kid50k_full", "kid", 50_000, 1_000_000))
register_metric(MetricSpec("pr50k3_full", "pr", 50_000, 200_000, nhood=3))
register_metric(MetricSpec("fid2k", "fid", 2_000, 2_000))
register_metric(MetricSpec("kid2k", "kid", 2_000, 2_000))
register_metric(MetricSpec("pr2k", "pr", 2_000, 2_000, nhood=3))

_NAME_RE = re.compile(r"(?P<kind>fid|kid|pr)(?P<num>\d+)(?P<k>k)?(?P<nhood>\d+)?(?P<full>_full)?")


def parse_metric(name: str) -> MetricSpec:
    """``MetricSpec`` for a registered name or a generic one: ``fid200``, ``kid500``, ``fid10k``, ``pr5k3_full``.

    Raises ``ValueError`` listing the accepted forms for anything else.
    """
    name = str(name).strip()
    if dict.__contains__(METRICS, name):
        return dict.__getitem__(METRICS, name)
    m = _NAME_RE.fullmatch(name)
    if m is None or (m["nhood"] is not None and (m["kind"] != "pr" or m["k"] is None)):
        raise ValueError(f"unknown metric {name!r}: expected one of {', '.join(dict.keys(METRICS))}, or "
                         "fid<N>/kid<N>/pr<N> with an optional 'k' (x1000) and '_full' (all real images), "
                         "e.g. fid200, kid2k, pr10k3_full")
    num = int(m["num"]) * (1000 if m["k"] else 1)
    if num < 2:
        raise ValueError(f"metric {name!r}: needs at least 2 generated images")
    kind: MetricKind = m["kind"]  # type: ignore[assignment]
    nhood = int(m["nhood"]) if m["nhood"] else 3
    if kind == "pr" and nhood < 1:
        raise ValueError(f"metric {name!r}: neighbourhood size must be >= 1")
    if m["full"]:
        max_real = {"fid": None, "kid": 1_000_000, "pr": 200_000}[kind]
    else:
        max_real = num
    return MetricSpec(name, kind, num, max_real, nhood=nhood)


def list_metrics() -> list[str]:
    """Registered metric names (generic ``fid<N>`` forms are accepted too)."""
    return list(dict.keys(METRICS))


# ----------------------------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _progress(enabled: bool, description: str, total: int) -> Iterator[Callable[[int], None]]:
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


def _num_unflipped(dataset: Any) -> int:
    # The protocol uses no x-flips. leangen's ImageDataset(xflip=True) appends mirrored copies at N..2N-1: skip them.
    n = len(dataset)
    return n // 2 if getattr(dataset, "xflip", False) else n


def _to_image(item: Any) -> torch.Tensor:
    img = item[0] if isinstance(item, (tuple, list)) else item
    if isinstance(img, np.ndarray):
        img = torch.from_numpy(img)
    if not isinstance(img, torch.Tensor):
        raise TypeError(f"dataset items must be uint8 [3, R, R] tensors (or (image, label) tuples), got "
                        f"{type(img).__name__}")
    if img.dtype != torch.uint8:
        raise TypeError(f"dataset images must be uint8 in 0..255, got {img.dtype}")
    return img


def _collate(items: list[Any]) -> torch.Tensor:
    return torch.stack([_to_image(it) for it in items])


def _iter_real_batches(dataset: Any, indices: np.ndarray, batch_size: int, num_workers: int) -> Iterator[torch.Tensor]:
    """uint8 ``[B, 3, R, R]`` batches of ``dataset[indices]`` in order."""
    get_batch = getattr(dataset, "get_batch", None)
    if callable(get_batch):  # leangen's ImageDataset: one gather from memory instead of per-item calls
        for i in range(0, len(indices), batch_size):
            yield _check_batch(get_batch(indices[i:i + batch_size]))
        return
    subset = torch.utils.data.Subset(dataset, indices.tolist())
    loader = torch.utils.data.DataLoader(subset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                                         collate_fn=_collate)
    yield from loader


def _check_batch(batch: Any) -> torch.Tensor:
    if isinstance(batch, (tuple, list)):
        batch = batch[0]
    if not isinstance(batch, torch.Tensor) or batch.dtype != torch.uint8 or batch.dim() != 4:
        raise TypeError("dataset.get_batch must return uint8 [B, 3, R, R] images")
    return batch


# ----------------------------------------------------------------------------------------------------------------
# Real reference statistics (cached)
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class RealReference:
    """Reference statistics of ``num_real`` real images: float64 ``mu [D]``, ``sigma [D, D]``, optional features."""

    mu: np.ndarray
    sigma: np.ndarray
    num_real: int
    features: np.ndarray | None
    cache_file: Path | None
    from_cache: bool


def _real_indices(available: int, num_real: int) -> np.ndarray:
    if num_real >= available:
        return np.arange(available)
    idx = np.random.RandomState(_REAL_SUBSET_SEED).choice(available, num_real, replace=False)
    return np.sort(idx)  # sorted: sequential reads of zips/folders


def _reference_cache_file(dataset: Any, num_real: int, protocol: dict[str, Any], root: Path) -> Path | None:
    fp_fn = getattr(dataset, "fingerprint", None)
    if not callable(fp_fn):
        return None  # no stable identity: caching could return statistics of another dataset
    fingerprint = str(fp_fn())
    key = {"v": _CACHE_VERSION, "fingerprint": fingerprint, "num_real": num_real,
           "real_subset_seed": _REAL_SUBSET_SEED, "protocol": protocol}
    digest = hashlib.md5(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(getattr(dataset, "name", type(dataset).__name__)))[:40]
    return root / "gan-metrics" / f"{name}-{fingerprint[:16]}-n{num_real}-{digest}.npz"


def _save_reference(path: Path, ref: RealReference, protocol: dict[str, Any]) -> None:
    from leangen.utils.files import atomic_path

    arrays: dict[str, np.ndarray] = {"mu": ref.mu, "sigma": ref.sigma, "num_real": np.array(ref.num_real),
                                     "protocol": np.array(json.dumps(protocol, sort_keys=True))}
    if ref.features is not None:
        arrays["features"] = ref.features.astype(np.float32)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a path
            np.savez(f, **arrays)


def real_reference(dataset: Any, num_real: int, net: InceptionFeatures, *, protocol: dict[str, Any],
                   need_features: bool, batch_size: int = 64, cache_dir: str | os.PathLike | None = None,
                   num_workers: int = 0, progress: bool = True) -> RealReference:
    """Features statistics of ``num_real`` real images (all, or a fixed pseudo-random subset), cached on disk."""
    available = _num_unflipped(dataset)
    num_real = min(num_real, available)
    if num_real < 2:
        raise ValueError(f"need at least 2 real images, the dataset has {available}")
    path = _reference_cache_file(dataset, num_real, protocol, cache_root(cache_dir))
    if path is not None and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                if not need_features or "features" in z.files:
                    feats = z["features"] if "features" in z.files else None
                    return RealReference(z["mu"], z["sigma"], int(z["num_real"]), feats, path, True)
        except (OSError, ValueError, KeyError):
            pass  # unreadable (e.g. truncated by a crash elsewhere): recompute and overwrite
    stats = RunningStats(FEATURE_DIM, keep=num_real if need_features else 0)
    indices = _real_indices(available, num_real)
    with _progress(progress, "real images", num_real) as advance:
        for batch in _iter_real_batches(dataset, indices, batch_size, num_workers):
            stats.update(net(batch).cpu().numpy())
            advance(batch.shape[0])
    mu, sigma = stats.mean_cov()
    ref = RealReference(mu, sigma, stats.n, stats.features if need_features else None, path, False)
    if path is not None:
        _save_reference(path, ref, protocol)
    return ref


# ----------------------------------------------------------------------------------------------------------------
# Generated features
# ----------------------------------------------------------------------------------------------------------------
def _model_device(G: Any) -> torch.device | None:
    if isinstance(G, torch.nn.Module):
        for p in G.parameters():
            return p.device
        for b in G.buffers():
            return b.device
    return None


def generated_features(G: Any, net: InceptionFeatures, num_gen: int, *, device: torch.device, batch_size: int = 64,
                       seed: int = 0, truncation_psi: float = 1.0, noise_mode: str = "random",
                       progress: bool = True) -> np.ndarray:
    """Features ``[num_gen, 2048]`` (float32) of ``num_gen`` images of ``G``.

    Latents come from a CPU ``torch.Generator`` seeded with ``seed`` (same images on every device), drawn batch by
    batch; the global RNG (used by ``noise_mode="random"``) is seeded too, inside ``fork_rng`` so the caller's stream
    is untouched. Images are quantized to uint8 like saved PNGs before the network sees them.
    """
    z_dim = int(G.z_dim)
    gen = torch.Generator("cpu").manual_seed(int(seed))
    fork_devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    was_training = getattr(G, "training", None)
    if isinstance(G, torch.nn.Module):
        G.eval()
    out = np.empty((num_gen, FEATURE_DIM), dtype=np.float32)
    try:
        with torch.random.fork_rng(devices=fork_devices), torch.no_grad(), \
                _progress(progress, "generated images", num_gen) as advance:
            torch.manual_seed(int(seed))
            for start in range(0, num_gen, batch_size):
                b = min(batch_size, num_gen - start)
                z = torch.randn([b, z_dim], generator=gen).to(device)
                images = G(z, truncation_psi=truncation_psi, noise_mode=noise_mode)
                out[start:start + b] = net(quantize_images(images)).cpu().numpy()
                advance(b)
    finally:
        if isinstance(G, torch.nn.Module) and was_training:
            G.train(True)
    return out


# ----------------------------------------------------------------------------------------------------------------
# calc_metric / report_metric
# ----------------------------------------------------------------------------------------------------------------
def _pr_note() -> str:
    return ("StyleGAN's pr50k3 uses NVIDIA's VGG16 features, which are not available offline; precision/recall here "
            "use the same TF-Inception pool3 features as FID/KID, so values are not comparable to StyleGAN's")


def calc_metrics(names: Sequence[str], G: Any, dataset: Any, *, device: str | torch.device | None = None,
                 batch_size: int = 64, inception_weights: str | os.PathLike | None = None,
                 cache_dir: str | os.PathLike | None = None, seed: int = 0, progress: bool = True,
                 resize: ResizeMode = "legacy_tensorflow", truncation_psi: float = 1.0, noise_mode: str = "random",
                 snapshot: str | None = None, num_workers: int = 0) -> list[dict[str, Any]]:
    """Several metrics at once; generated features and real statistics are shared between metrics that agree on
    the number of images (``fid2k,kid2k,pr2k`` extract features once). Returns one record per name (see
    ``calc_metric``)."""
    specs = [parse_metric(n) for n in names]
    if device is None:
        device = _model_device(G) or torch.device("cpu")
    device = torch.device(device)
    g_dev = _model_device(G)
    if g_dev is not None and g_dev.type != device.type:
        raise ValueError(f"G is on {g_dev} but device={device}; move it first (G.to(device))")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    net = load_inception(device, inception_weights, resize=resize, cache_dir=cache_dir)
    w_sha = weights_sha256(inception_weights, cache_dir)
    available = _num_unflipped(dataset)
    # Real statistics depend only on (num_real, protocol): compute once per num_real, with features if any needs them.
    real_needs: dict[int, bool] = {}
    for spec in specs:
        n_real = spec.num_real(available)
        real_needs[n_real] = real_needs.get(n_real, False) or spec.needs_real_features
    cache_protocol = {"feature_net": FEATURE_NET, "weights_sha256": w_sha, "resize": RESIZE_PROTOCOL[resize],
                      "quantize": "uint8", "xflip": False, "cov": "unbiased"}
    refs: dict[int, RealReference] = {}
    gens: dict[int, np.ndarray] = {}
    records = []
    for spec in specs:
        t0 = time.time()
        n_real = spec.num_real(available)
        if n_real not in refs:
            refs[n_real] = real_reference(dataset, n_real, net, protocol=cache_protocol,
                                          need_features=real_needs[n_real], batch_size=batch_size,
                                          cache_dir=cache_dir, num_workers=num_workers, progress=progress)
        ref = refs[n_real]
        if spec.num_gen not in gens:
            gens[spec.num_gen] = generated_features(G, net, spec.num_gen, device=device, batch_size=batch_size,
                                                    seed=seed, truncation_psi=truncation_psi,
                                                    noise_mode=noise_mode, progress=progress)
        feats = gens[spec.num_gen]
        protocol: dict[str, Any] = {
            "feature_net": FEATURE_NET, "weights_sha256": w_sha, "resize": RESIZE_PROTOCOL[resize],
            "quantize": "uint8", "num_gen": spec.num_gen, "num_real": ref.num_real, "xflip": False,
            "real_subset": "all" if ref.num_real >= available else f"random(seed={_REAL_SUBSET_SEED})",
            "seed": seed, "latents": "torch.randn, CPU generator", "truncation_psi": truncation_psi,
            "noise_mode": noise_mode,
        }
        if spec.kind == "fid":
            method = auto_fid_method(ref.num_real, spec.num_gen, FEATURE_DIM)
            value = fid_against_stats(ref.mu, ref.sigma, feats, num_real=ref.num_real, method=method)
            results = {spec.name: value}
            protocol.update(stats="float64 mean, unbiased covariance (N-1)", fid_trace_sqrt=method)
        elif spec.kind == "kid":
            assert ref.features is not None
            value = kid_from_features(ref.features, feats, num_subsets=spec.num_subsets,
                                      max_subset_size=spec.max_subset_size, seed=seed)
            results = {spec.name: value}
            protocol.update(kid_kernel="(x.y/d+1)^3", kid_num_subsets=spec.num_subsets,
                            kid_subset_size=min(spec.max_subset_size, ref.num_real, spec.num_gen))
        else:
            assert ref.features is not None
            precision, recall = pr_from_features(ref.features, feats, k=spec.nhood, device=device)
            results = {f"{spec.name}_precision": precision, f"{spec.name}_recall": recall}
            protocol.update(pr_nhood=spec.nhood, pr_feature_net=FEATURE_NET, pr_note=_pr_note())
        protocol["reference_cache"] = None if ref.cache_file is None else str(ref.cache_file)
        total = time.time() - t0
        record: dict[str, Any] = {
            "results": results, "metric": spec.name, "total_time": total, "total_time_str": format_time(total),
            "num_gpus": 1 if device.type == "cuda" else 0, "device": str(device), "protocol": protocol,
            "timestamp": time.time(),
        }
        if snapshot is not None:  # absent rather than null, so a caller (the training loop) can setdefault it
            record["snapshot"] = snapshot
        records.append(record)
    return records


def calc_metric(name: str, G: Any, dataset: Any, *, device: str | torch.device | None = None, batch_size: int = 64,
                inception_weights: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                seed: int = 0, progress: bool = True, resize: ResizeMode = "legacy_tensorflow",
                truncation_psi: float = 1.0, noise_mode: str = "random", snapshot: str | None = None,
                num_workers: int = 0) -> dict[str, Any]:
    """Compute metric ``name`` of generator ``G`` against ``dataset``; returns a StyleGAN-like record.

    ``G``: ``G.z_dim`` and ``G(z [N, z_dim], truncation_psi=, noise_mode=) -> [N, 3, R, R]`` float in [-1, 1], on
    ``device`` (default: where its parameters are). ``dataset``: items are uint8 ``[3, R, R]`` (or ``(image, label)``);
    an optional ``fingerprint()`` enables the on-disk reference-statistics cache.
    Record: ``{"results": {name: value} (PR: name_precision / name_recall), "metric", "total_time",
    "total_time_str", "protocol": {feature_net, weights_sha256, resize, quantize, num_gen, num_real, xflip, ...},
    "timestamp", "snapshot" (only when given), ...}``. ``inception_weights`` overrides the weights (see ``load_inception``);
    ``cache_dir`` overrides ``$LEANGEN_CACHE`` / ``~/.cache/leangen``.
    """
    return calc_metrics([name], G, dataset, device=device, batch_size=batch_size, inception_weights=inception_weights,
                        cache_dir=cache_dir, seed=seed, progress=progress, resize=resize,
                        truncation_psi=truncation_psi, noise_mode=noise_mode, snapshot=snapshot,
                        num_workers=num_workers)[0]


def report_metric(record: dict[str, Any], run_dir: str | os.PathLike | None) -> Path | None:
    """Append ``record`` as one JSON line to ``<run_dir>/metric-<metric>.jsonl`` (no-op for ``run_dir=None``)."""
    if run_dir is None:
        return None
    path = Path(run_dir) / f"metric-{record['metric']}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    return path


__all__ = [
    "MetricSpec", "METRICS", "register_metric", "parse_metric", "list_metrics", "format_time", "RealReference",
    "real_reference", "generated_features", "calc_metrics", "calc_metric", "report_metric",
]
