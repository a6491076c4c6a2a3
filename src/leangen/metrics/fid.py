"""FID, KID and improved precision/recall on feature matrices: pure functions, no network, no I/O.

Conventions (see ``docs`` of each function):

- Features are ``[N, D]`` arrays (float32 from the network); statistics are computed in float64.
- Covariance: ``ddof=0`` (divide by N, the default) is StyleGAN2-ADA's ``FeatureStats.get_mean_cov`` (raw second
  moment / N - mu mu^T), i.e. the StyleGAN protocol that ``leangen eval`` follows. ``ddof=1`` (divide by N - 1) is
  what clean-fid, pytorch-fid and torchmetrics use (``np.cov``). Both sides of one FID use the same convention.
  The difference in FID is O(D/N): negligible at 50k, ~1% at 2k, large at N < D (fid200 ...), so metric records
  name the convention and the reference cache is keyed on it.
- FID = ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2)). Three exact ways to get the trace term:
  ``"sqrtm"``, the reference (``scipy.linalg.sqrtm`` of the product, real part, as StyleGAN/pytorch-fid);
  ``"eigh"``, sum(sqrt(eig(S_r^(1/2) S_g S_r^(1/2)))) from two symmetric ``[D, D]`` eigendecompositions;
  ``"lowrank"``, the same eigenvalues from the ``[N_gen, N_gen]`` matrix Y S_r Y^T (Y = centered generated features
  / sqrt(N - ddof)). ``"auto"`` uses sqrtm when both sets have more samples than dimensions (full-rank covariances, the
  fid50k case) and lowrank otherwise: with N <= D (every CPU-sized run) the product is singular and sqrtm is slow
  (15-40 s at D = 2048 on 2 cores) and ill-conditioned (square roots of round-off eigenvalues), lowrank takes <1 s.
  The record names the method used.
- KID: unbiased MMD^2 with the cubic polynomial kernel k(x, y) = (x.y / D + 1)^3, averaged over random subsets.
- Precision/recall: Kynkaenniemi et al. 2019, k-NN hyperspheres (k = 3) around each sample of the reference set.
"""
from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import scipy.linalg
import torch

FIDMethod = Literal["auto", "sqrtm", "eigh", "lowrank"]


# ----------------------------------------------------------------------------------------------------------------
# Statistics
# ----------------------------------------------------------------------------------------------------------------
def _as_features(x: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a [N, D] feature matrix, got shape {x.shape}")
    return x


def _check_ddof(ddof: int) -> int:
    if ddof not in (0, 1):
        raise ValueError(f"ddof must be 0 (divide by N, StyleGAN) or 1 (divide by N - 1), got {ddof!r}")
    return int(ddof)


def feature_stats(features: np.ndarray | torch.Tensor, ddof: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Float64 mean ``[D]`` and covariance ``[D, D]`` of ``[N, D]`` features (N >= 2), divided by ``N - ddof``
    (``ddof=0``: StyleGAN; ``1``: np.cov)."""
    ddof = _check_ddof(ddof)
    x = _as_features(features, "features").astype(np.float64)
    if x.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors for a covariance, got {x.shape[0]}")
    mu = x.mean(axis=0)
    xc = x - mu
    return mu, (xc.T @ xc) / (x.shape[0] - ddof)


class RunningStats:
    """Float64 running sums for mean/covariance over batches, optionally keeping the first ``keep`` features.

    ``update(features [B, D])``; ``mean_cov(ddof=0)`` -> (mu, sigma / (N - ddof)); ``features`` holds the
    kept rows (float32) for KID / precision-recall. Memory: O(D^2), independent of N (beyond the kept rows).
    """

    def __init__(self, dim: int, keep: int = 0) -> None:
        self.dim, self.keep, self.n = dim, keep, 0
        self._centered = np.zeros((dim, dim), dtype=np.float64)
        self._mean = np.zeros(dim, dtype=np.float64)
        self._kept: list[np.ndarray] = []
        self._num_kept = 0

    def update(self, features: np.ndarray | torch.Tensor) -> None:
        x = _as_features(features, "features")
        if x.shape[1] != self.dim:
            raise ValueError(f"expected {self.dim}-d features, got {x.shape[1]}")
        if self._num_kept < self.keep:
            take = x[: self.keep - self._num_kept].astype(np.float32)
            self._kept.append(take)
            self._num_kept += take.shape[0]
        x = x.astype(np.float64)
        b = x.shape[0]
        if b == 0:
            return
        # Chan et al.'s pairwise update of the centered scatter matrix: as exact as centering all data at once,
        # unlike sum(x x^T) - N mu mu^T, which cancels catastrophically when |mu| >> spread.
        mean_b = x.mean(axis=0)
        xc = x - mean_b
        delta = mean_b - self._mean
        n_new = self.n + b
        self._centered += xc.T @ xc + np.outer(delta, delta) * (self.n * b / n_new)
        self._mean += delta * (b / n_new)
        self.n = n_new

    def mean_cov(self, ddof: int = 0) -> tuple[np.ndarray, np.ndarray]:
        ddof = _check_ddof(ddof)
        if self.n < 2:
            raise ValueError(f"need at least 2 feature vectors for a covariance, got {self.n}")
        return self._mean.copy(), self._centered / (self.n - ddof)

    @property
    def features(self) -> np.ndarray:
        if not self._kept:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(self._kept, axis=0)


# ----------------------------------------------------------------------------------------------------------------
# FID
# ----------------------------------------------------------------------------------------------------------------
def _trace_sqrt_sqrtm(sigma1: np.ndarray, sigma2: np.ndarray, eps: float) -> float:
    """Tr((S1 S2)^(1/2)) with scipy's sqrtm, as pytorch-fid/StyleGAN compute it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy < 1.16 prints/warns "matrix is singular" for the expected N <= D case
        covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        # Singular product gave inf/nan: regularize both covariances slightly, as the reference does.
        offset = np.eye(sigma1.shape[0]) * eps
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        # Round-off gives tiny imaginary parts (the exact eigenvalues are real and >= 0): drop them; warn if large.
        imag = float(np.abs(np.diagonal(covmean).imag).max())
        if imag > 1e-3:
            warnings.warn(f"sqrtm returned imaginary components up to {imag:.3g}; FID may be inaccurate "
                          "(try method='eigh')", RuntimeWarning, stacklevel=3)
        covmean = covmean.real
    return float(np.trace(covmean))


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((sigma + sigma.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def _trace_sqrt_eigh(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr((S1 S2)^(1/2)) for symmetric PSD S1, S2: S1 S2 is similar to S1^(1/2) S2 S1^(1/2) (symmetric PSD)."""
    s1h = _psd_sqrt(sigma1)
    m = s1h @ sigma2 @ s1h
    ev = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(ev, 0, None)).sum())


def _trace_sqrt_lowrank(sigma: np.ndarray, x: np.ndarray, ddof: int) -> tuple[float, float]:
    """(Tr((S S_x)^(1/2)), Tr(S_x)) where S_x is the covariance (divided by n - ddof) of the rows of ``x [n, D]``.

    S_x = Y^T Y with Y = (x - mean) / sqrt(n - ddof), so the non-zero eigenvalues of S Y^T Y are those of the small
    symmetric PSD matrix Y S Y^T ``[n, n]``: exact, and cheap when n <= D.
    """
    xc = x.astype(np.float64) - x.mean(axis=0, dtype=np.float64)
    y = xc / np.sqrt(x.shape[0] - ddof)
    m = y @ sigma @ y.T
    ev = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(ev, 0, None)).sum()), float((y * y).sum())


def auto_fid_method(n_real: int, n_gen: int, dim: int) -> Literal["sqrtm", "eigh", "lowrank"]:
    """The method ``"auto"`` picks: ``"sqrtm"`` (the reference) when both sets have more samples than dimensions
    (full-rank covariances, the fid50k case); ``"lowrank"`` when the generated set has at most D samples (exact, via an
    ``[Ng, Ng]`` eigenproblem, needs the generated features); ``"eigh"`` otherwise."""
    if min(n_real, n_gen) > dim:
        return "sqrtm"
    return "lowrank" if n_gen <= dim else "eigh"


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, *,
                     method: Literal["sqrtm", "eigh"] = "sqrtm", eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussians N(mu1, sigma1) and N(mu2, sigma2); ``mu [D]``, ``sigma [D, D]``.

    ``method="sqrtm"``: ``scipy.linalg.sqrtm`` of the product (imaginary round-off dropped; ``eps * I`` added to both
    covariances if the result is not finite). ``method="eigh"``: exact for symmetric PSD inputs and stable when
    the covariances are singular. Returns a float >= 0 up to round-off.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shape mismatch: mu {mu1.shape} / {mu2.shape}, sigma {sigma1.shape} / {sigma2.shape}")
    if method == "sqrtm":
        tr_covmean = _trace_sqrt_sqrtm(sigma1, sigma2, eps)
    elif method == "eigh":
        tr_covmean = _trace_sqrt_eigh(sigma1, sigma2)
    else:
        raise ValueError(f"unknown FID method {method!r}; expected 'sqrtm' or 'eigh'")
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def fid_against_stats(mu_real: np.ndarray, sigma_real: np.ndarray, gen: np.ndarray | torch.Tensor, *,
                      num_real: int | None = None, method: FIDMethod = "auto", ddof: int = 0) -> float:
    """FID of generated features ``gen [Ng, D]`` against reference statistics (``mu_real [D]``, ``sigma_real [D, D]``,
    e.g. from a cached ``.npz``). ``num_real`` (samples behind the statistics) only informs ``method="auto"``;
    ``ddof``: the covariance normalization of ``gen`` (use the one ``sigma_real`` was made with)."""
    g = _as_features(gen, "gen")
    mu_r = np.asarray(mu_real, np.float64)
    sigma_r = np.asarray(sigma_real, np.float64)
    if g.shape[1] != mu_r.shape[0]:
        raise ValueError(f"feature dimensions differ: statistics {mu_r.shape[0]}, gen {g.shape[1]}")
    if g.shape[0] < 2:
        raise ValueError(f"need at least 2 generated feature vectors, got {g.shape[0]}")
    dim = g.shape[1]
    if method == "auto":
        method = auto_fid_method(num_real if num_real is not None else dim + 1, g.shape[0], dim)
    if method == "lowrank":
        tr_covmean, tr_g = _trace_sqrt_lowrank(sigma_r, g, _check_ddof(ddof))
        diff = mu_r - g.astype(np.float64).mean(axis=0)
        return float(diff @ diff + np.trace(sigma_r) + tr_g - 2 * tr_covmean)
    mu_g, sigma_g = feature_stats(g, ddof)
    return frechet_distance(mu_r, sigma_r, mu_g, sigma_g, method=method)


def fid_from_features(real: np.ndarray | torch.Tensor, gen: np.ndarray | torch.Tensor, *,
                      method: FIDMethod = "auto", ddof: int = 0) -> float:
    """FID between feature matrices ``real [Nr, D]`` and ``gen [Ng, D]`` (Nr, Ng >= 2); lower is better.

    ``method``: ``"sqrtm"`` (reference), ``"eigh"``, ``"lowrank"`` (exact via the smaller set's ``[n, n]``
    eigenproblem) or ``"auto"`` (sqrtm when both N > D, else lowrank; see the module docstring).
    ``ddof``: covariances divided by N - ddof (0: StyleGAN2-ADA, the default; 1: np.cov / clean-fid).
    """
    r, g = _as_features(real, "real"), _as_features(gen, "gen")
    if r.shape[1] != g.shape[1]:
        raise ValueError(f"feature dimensions differ: real {r.shape[1]}, gen {g.shape[1]}")
    if method == "auto":
        method = "sqrtm" if min(r.shape[0], g.shape[0]) > r.shape[1] else "lowrank"
    if method == "lowrank" and r.shape[0] < g.shape[0]:
        r, g = g, r  # symmetric distance: put the smaller set on the low-rank side
    mu_r, sigma_r = feature_stats(r, ddof)
    return fid_against_stats(mu_r, sigma_r, g, num_real=r.shape[0], method=method, ddof=ddof)


# ----------------------------------------------------------------------------------------------------------------
# KID
# ----------------------------------------------------------------------------------------------------------------
def _poly_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a @ b.T / a.shape[1] + 1.0) ** 3


# Precompute whole Gram matrices (then index them per subset) while they take at most this many float64 entries:
# ~25x fewer flops than recomputing the kernels for 100 overlapping subsets at kid2k sizes.
_GRAM_LIMIT = 1 << 25


def kid_subset_values(real: np.ndarray | torch.Tensor, gen: np.ndarray | torch.Tensor, *, num_subsets: int = 100,
                      max_subset_size: int = 1000, seed: int = 0) -> np.ndarray:
    """Unbiased MMD^2 estimates ``[num_subsets]`` between random equal-size subsets of ``real`` and ``gen``.

    Subset size m = min(max_subset_size, Nr, Ng) (shrinks for small sets, as torch-fidelity #45 asks), m >= 2;
    subsets drawn without replacement from ``np.random.default_rng(seed)``. Kernel (x.y / D + 1)^3, float64.
    """
    r = _as_features(real, "real").astype(np.float64)
    g = _as_features(gen, "gen").astype(np.float64)
    if r.shape[1] != g.shape[1]:
        raise ValueError(f"feature dimensions differ: real {r.shape[1]}, gen {g.shape[1]}")
    m = min(max_subset_size, r.shape[0], g.shape[0])
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples on each side, got {r.shape[0]} real and {g.shape[0]} gen")
    rng = np.random.default_rng(seed)
    nr, ng = r.shape[0], g.shape[0]
    use_gram = nr * nr + ng * ng + nr * ng <= _GRAM_LIMIT
    if use_gram:
        k_gg, k_rr, k_gr = _poly_kernel(g, g), _poly_kernel(r, r), _poly_kernel(g, r)
    out = np.empty(num_subsets, dtype=np.float64)
    for s in range(num_subsets):
        ig = rng.choice(ng, m, replace=False)
        ir = rng.choice(nr, m, replace=False)
        if use_gram:
            a_gg, a_rr, a_gr = k_gg[np.ix_(ig, ig)], k_rr[np.ix_(ir, ir)], k_gr[np.ix_(ig, ir)]
        else:
            x, y = g[ig], r[ir]
            a_gg, a_rr, a_gr = _poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y)
        # Unbiased: within-set sums exclude the diagonal (k(x, x)), hence m (m - 1).
        within = (a_gg.sum() - np.trace(a_gg) + a_rr.sum() - np.trace(a_rr)) / (m * (m - 1))
        out[s] = within - 2.0 * a_gr.sum() / (m * m)
    return out


def kid_from_features(real: np.ndarray | torch.Tensor, gen: np.ndarray | torch.Tensor, *, num_subsets: int = 100,
                      max_subset_size: int = 1000, seed: int = 0) -> float:
    """KID: mean of ``kid_subset_values`` (unbiased, so ~0, possibly slightly negative, for equal distributions).

    Reported raw (not x1000), like StyleGAN's ``kid50k_full``.
    """
    return float(kid_subset_values(real, gen, num_subsets=num_subsets, max_subset_size=max_subset_size,
                                   seed=seed).mean())


# ----------------------------------------------------------------------------------------------------------------
# Improved precision / recall
# ----------------------------------------------------------------------------------------------------------------
def _sq_norms(x: torch.Tensor) -> torch.Tensor:
    return (x * x).sum(1)


def _pairwise_dist(a: torch.Tensor, b: torch.Tensor, b_sq: torch.Tensor) -> torch.Tensor:
    # |a - b|^2 = |a|^2 + |b|^2 - 2 a.b (one matmul); clamp the small negatives round-off makes for near-equal rows.
    d2 = _sq_norms(a)[:, None] + b_sq[None, :] - 2.0 * (a @ b.T)
    return d2.clamp_min_(0).sqrt_()


def _rows_per_batch(n_cols: int, budget: int = 1 << 26) -> int:
    return max(1, budget // max(1, n_cols))


def knn_radii(ref: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row of ``ref [N, D]`` to its k-th nearest *other* row: ``[N]`` (needs N > k)."""
    n = ref.shape[0]
    if n <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} samples per set, got {n}")
    ref_sq = _sq_norms(ref)
    radii = torch.empty(n, dtype=ref.dtype, device=ref.device)
    step = _rows_per_batch(n)
    for i in range(0, n, step):
        d = _pairwise_dist(ref[i:i + step], ref, ref_sq)
        # k+1-th smallest: the smallest is the row itself (distance ~0).
        radii[i:i + step] = d.kthvalue(k + 1, dim=1).values
    return radii


def manifold_coverage(ref: torch.Tensor, radii: torch.Tensor, probe: torch.Tensor) -> float:
    """Fraction of ``probe`` rows inside at least one hypersphere (center ``ref[j]``, radius ``radii[j]``)."""
    ref_sq = _sq_norms(ref)
    inside = 0
    step = _rows_per_batch(ref.shape[0])
    for i in range(0, probe.shape[0], step):
        d = _pairwise_dist(probe[i:i + step], ref, ref_sq)
        inside += int((d <= radii[None, :]).any(dim=1).sum())
    return inside / probe.shape[0]


def pr_from_features(real: np.ndarray | torch.Tensor, gen: np.ndarray | torch.Tensor, *, k: int = 3,
                     device: str | torch.device = "cpu") -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) -> ``(precision, recall)``, each in [0, 1].

    precision = fraction of generated samples inside the real manifold (union of k-NN balls of real samples);
    recall = fraction of real samples inside the generated manifold. Distances in float32 on ``device``.
    """
    dev = torch.device(device)
    r = torch.as_tensor(_as_features(real, "real"), dtype=torch.float32, device=dev)
    g = torch.as_tensor(_as_features(gen, "gen"), dtype=torch.float32, device=dev)
    if r.shape[1] != g.shape[1]:
        raise ValueError(f"feature dimensions differ: real {r.shape[1]}, gen {g.shape[1]}")
    precision = manifold_coverage(r, knn_radii(r, k), g)
    recall = manifold_coverage(g, knn_radii(g, k), r)
    return precision, recall


def f_score(precision: float, recall: float) -> float:
    """Harmonic mean of precision and recall (0 when both are 0)."""
    s = precision + recall
    return 0.0 if s == 0 else 2 * precision * recall / s


__all__ = [
    "feature_stats", "RunningStats", "frechet_distance", "fid_against_stats", "fid_from_features", "auto_fid_method",
    "kid_subset_values", "kid_from_features", "knn_radii", "manifold_coverage", "pr_from_features", "f_score",
]
