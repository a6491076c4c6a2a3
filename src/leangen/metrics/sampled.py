"""Metrics of generator samples (consumes ``samples``): FID, KID and precision/recall, StyleGAN's protocol.

``num_gen`` images from seeded CPU latents, quantized to uint8 like saved PNGs, against ``min(N, all)`` real images
(a fixed pseudo-random subset when the dataset is larger; all of them for ``_full``), TF-Inception pool3 features
(see ``leangen.metrics.inception``). FID covariances divide by N (StyleGAN2-ADA) unless ``cov="unbiased"``.
Metrics of the same size in one call share the generated features and the real statistics.
"""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np
import torch

from leangen.metrics.base import MetricSpec, Outcome
from leangen.metrics.batches import num_unflipped
from leangen.metrics.context import COV_PROTOCOL, EvalContext, evaluating, progress_bar
from leangen.metrics.feasibility import few_samples_warning
from leangen.metrics.fid import auto_fid_method, fid_against_stats, kid_from_features, pr_from_features
from leangen.metrics.inception import FEATURE_DIM, FEATURE_NET, InceptionFeatures, quantize_images
from leangen.metrics.reference import RealReference, inception_protocol, reference_for, subset_label


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
    out = np.empty((num_gen, FEATURE_DIM), dtype=np.float32)
    with evaluating(G, seed, device), progress_bar(progress, "generated images", num_gen) as advance:
        for start in range(0, num_gen, batch_size):
            b = min(batch_size, num_gen - start)
            z = torch.randn([b, z_dim], generator=gen).to(device)
            images = G(z, truncation_psi=truncation_psi, noise_mode=noise_mode)
            out[start:start + b] = net(quantize_images(images)).cpu().numpy()
            advance(b)
    return out


def _pr_note() -> str:
    return ("StyleGAN's pr50k3 uses NVIDIA's VGG16 features, which are not available offline; precision/recall here "
            "use the same TF-Inception pool3 features as FID/KID, so values are not comparable to StyleGAN's")


def feature_scores(spec: MetricSpec, ref: RealReference, feats: np.ndarray,
                   ctx: EvalContext) -> tuple[dict[str, float], dict[str, Any]]:
    """``(results, protocol entries)`` of a FID-, KID- or PR-kind ``spec`` from real statistics and ``feats``."""
    n_gen = feats.shape[0]
    if spec.kind in ("fid", "fid_pairs"):
        method = auto_fid_method(ref.num_real, n_gen, FEATURE_DIM)
        value = fid_against_stats(ref.mu, ref.sigma, feats, num_real=ref.num_real, method=method, ddof=ctx.ddof)
        return {spec.name: value}, {"cov": COV_PROTOCOL[ctx.cov], "stats": f"float64 mean, {COV_PROTOCOL[ctx.cov]} "
                                    "covariance", "fid_trace_sqrt": method}
    if spec.kind in ("kid", "kid_pairs"):
        assert ref.features is not None
        value = kid_from_features(ref.features, feats, num_subsets=spec.num_subsets,
                                  max_subset_size=spec.max_subset_size, seed=ctx.seed)
        return {spec.name: value}, {"kid_kernel": "(x.y/d+1)^3", "kid_num_subsets": spec.num_subsets,
                                    "kid_subset_size": min(spec.max_subset_size, ref.num_real, n_gen)}
    if spec.kind == "pr":
        assert ref.features is not None
        precision, recall = pr_from_features(ref.features, feats, k=spec.nhood, device=ctx.device)
        return ({f"{spec.name}_precision": precision, f"{spec.name}_recall": recall},
                {"pr_nhood": spec.nhood, "pr_feature_net": FEATURE_NET, "pr_note": _pr_note()})
    raise ValueError(f"metric {spec.name}: kind {spec.kind!r} is not a feature metric")


def sample_sizes(spec: MetricSpec, dataset: Any) -> tuple[int, int]:
    """``(num_gen, num_real)`` of a sampled metric on ``dataset``."""
    return spec.num_gen, spec.num_real(num_unflipped(dataset))


def evaluate_samples(specs: Sequence[MetricSpec], G: Any, dataset: Any, ctx: EvalContext) -> Iterator[Outcome]:
    """One ``Outcome`` per spec, in order; work is done lazily, as each is asked for (so it can be timed)."""
    available = num_unflipped(dataset)
    # Real statistics depend only on (num_real, protocol): compute once per num_real, with features if any needs them.
    real_needs: dict[int, bool] = {}
    for spec in specs:
        n_real = spec.num_real(available)
        real_needs[n_real] = real_needs.get(n_real, False) or spec.needs_real_features
    refs: dict[int, RealReference] = {}
    gens: dict[int, np.ndarray] = {}
    for spec in specs:
        n_real = spec.num_real(available)
        if n_real not in refs:
            refs[n_real] = reference_for(dataset, n_real, ctx, need_features=real_needs[n_real])
        ref = refs[n_real]
        if spec.num_gen not in gens:
            gens[spec.num_gen] = generated_features(G, ctx.net(), spec.num_gen, device=ctx.device,
                                                    batch_size=ctx.batch_size, seed=ctx.seed,
                                                    truncation_psi=ctx.truncation_psi, noise_mode=ctx.noise_mode,
                                                    progress=ctx.progress)
        results, extra = feature_scores(spec, ref, gens[spec.num_gen], ctx)
        protocol: dict[str, Any] = {
            **inception_protocol(ctx), "num_gen": spec.num_gen, "num_real": ref.num_real,
            "real_subset": subset_label(available, ref.num_real), "seed": ctx.seed,
            "latents": "torch.randn, CPU generator", "truncation_psi": ctx.truncation_psi,
            "noise_mode": ctx.noise_mode, **extra,
            "reference_cache": None if ref.cache_file is None else str(ref.cache_file),
        }
        warning = few_samples_warning(spec, spec.num_gen, ref.num_real)
        yield Outcome(results, protocol, [warning] if warning else [])


__all__ = ["generated_features", "feature_scores", "sample_sizes", "evaluate_samples"]
