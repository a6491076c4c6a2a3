"""KID and improved precision/recall against references written here from the papers' definitions.

- KID (Binkowski et al. 2018, as StyleGAN's ``kid50k_full``): the unbiased estimator of MMD² with the cubic polynomial
  kernel ``k(x, y) = (x.y / d + 1)^3``, averaged over random equal-size subsets of generated and real features.
- Precision/recall (Kynkäänniemi et al. 2019): the real manifold is the union of balls around each real feature with
  radius the distance to its k-th nearest *other* real feature (k = 3); precision is the fraction of generated
  features inside it, recall the same with the roles swapped.

The references use plain Python loops over pairs, float64, and no code of ``leangen.metrics``.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from leangen.metrics import fid
from leangen.metrics.fid import kid_from_features, kid_subset_values, knn_radii, pr_from_features


def features(n: int, d: int, seed: int, shift: float = 0.0, scale: float = 1.0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((n, d)) * scale + shift).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------- KID

def kernel(x: np.ndarray, y: np.ndarray, degree: int = 3) -> float:
    return (float(np.dot(x.astype(np.float64), y.astype(np.float64))) / len(x) + 1.0) ** degree


def mmd2_unbiased(x: np.ndarray, y: np.ndarray, degree: int = 3) -> float:
    """Unbiased MMD² of two equal-size sets: within-set means over i != j, cross-set mean over all pairs."""
    m = len(x)
    xx = sum(kernel(x[i], x[j], degree) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(kernel(y[i], y[j], degree) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(kernel(x[i], y[j], degree) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_on_whole_sets_is_the_unbiased_mmd2_of_the_cubic_kernel() -> None:
    """Subsets as large as both sets are permutations of them: every subset value is the plain unbiased MMD²."""
    real, gen = features(24, 8, 0), features(24, 8, 1, shift=0.5, scale=1.2)
    expected = mmd2_unbiased(gen, real)
    values = kid_subset_values(real, gen, num_subsets=3, max_subset_size=1000, seed=0)
    np.testing.assert_allclose(values, expected, rtol=1e-10, atol=1e-12)
    assert kid_from_features(real, gen, num_subsets=3, max_subset_size=1000) == pytest.approx(expected, rel=1e-10)
    # the figure is far from what a quadratic or quartic kernel gives, so a wrong degree cannot pass
    assert expected > 0.1
    for degree in (2, 4):
        assert abs(mmd2_unbiased(gen, real, degree) - expected) > 0.05 * expected


@pytest.mark.parametrize("gram", [True, False], ids=["whole-gram", "per-subset-kernels"])
def test_kid_averages_subsets_drawn_as_documented(gram: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Subset size m = min(max_subset_size, Nr, Ng); generated then real indices drawn without replacement from
    ``np.random.default_rng(seed)`` per subset; KID is the mean of the subset estimates. Both ways of evaluating the
    kernels (whole Gram matrices indexed per subset, or per-subset kernels for large sets) give it."""
    if not gram:
        monkeypatch.setattr(fid, "_GRAM_LIMIT", 0)
    real, gen = features(30, 6, 2), features(20, 6, 3, shift=0.2)
    m, rng, expected = 7, np.random.default_rng(11), []
    for _ in range(5):
        ig = rng.choice(20, m, replace=False)
        ir = rng.choice(30, m, replace=False)
        expected.append(mmd2_unbiased(gen[ig], real[ir]))
    values = kid_subset_values(real, gen, num_subsets=5, max_subset_size=m, seed=11)
    np.testing.assert_allclose(values, expected, rtol=1e-10, atol=1e-12)
    assert kid_from_features(real, gen, num_subsets=5, max_subset_size=m, seed=11) == pytest.approx(
        float(np.mean(expected)), rel=1e-10)
    # m shrinks to the smaller set when max_subset_size exceeds it (20 generated features here)
    whole = kid_subset_values(real, gen, num_subsets=1, max_subset_size=1000, seed=4)
    rng = np.random.default_rng(4)
    ig, ir = rng.choice(20, 20, replace=False), rng.choice(30, 20, replace=False)
    np.testing.assert_allclose(whole, [mmd2_unbiased(gen[ig], real[ir])], rtol=1e-10)


# ---------------------------------------------------------------------------------------------- precision/recall

def distance(a: np.ndarray, b: np.ndarray) -> float:
    return math.sqrt(sum((float(p) - float(q)) ** 2 for p, q in zip(a, b)))


def radii(ref: np.ndarray, k: int) -> list[float]:
    """Distance from each point to its k-th nearest other point."""
    return [sorted(distance(ref[i], ref[j]) for j in range(len(ref)) if j != i)[k - 1] for i in range(len(ref))]


def coverage(ref: np.ndarray, ref_radii: list[float], probe: np.ndarray) -> float:
    inside = [any(distance(p, c) <= r for c, r in zip(ref, ref_radii)) for p in probe]
    return sum(inside) / len(probe)


def reference_pr(real: np.ndarray, gen: np.ndarray, k: int) -> tuple[float, float]:
    return coverage(real, radii(real, k), gen), coverage(gen, radii(gen, k), real)


def test_knn_radii_are_the_kth_nearest_other_point() -> None:
    ref = features(25, 5, 4)
    for k in (1, 3, 5):
        np.testing.assert_allclose(knn_radii(torch.from_numpy(ref), k).numpy(), radii(ref, k), rtol=1e-5)


@pytest.mark.parametrize("seed,shift,scale", [(5, 0.4, 1.0), (8, 0.0, 1.5), (7, 0.8, 0.7)])
def test_precision_recall_equal_the_reference(seed: int, shift: float, scale: float) -> None:
    real, gen = features(40, 6, seed), features(35, 6, seed + 100, shift=shift, scale=scale)
    expected = reference_pr(real, gen, 3)
    assert pr_from_features(real, gen) == expected  # fractions of whole counts: exact
    # the data decides k: with k = 2 or 4 the reference gives other values (so an off-by-one k cannot pass)
    assert reference_pr(real, gen, 2) != expected and reference_pr(real, gen, 4) != expected
    assert 0.0 < min(expected) and max(expected) < 1.0
    assert pr_from_features(real, gen, k=5) == reference_pr(real, gen, 5)
