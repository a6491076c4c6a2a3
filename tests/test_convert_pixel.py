"""Official PixelFolder and CIPS-skip checkpoints -> leangen models.

The official state dicts are written here from the published key scheme (random weights, small configurations; the
official widths are 512 up to 32px, so the resolutions stay low), and the converted models are checked against an
independent functional forward of the official inference path (noise left out on both sides), plus the refusals.
"""
from __future__ import annotations

import json
import math
import re

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

import leangen
from leangen.cli.main import cli
from leangen.convert import ConversionError, convert_checkpoint, convert_to_directory, detect_format, formats
from leangen.convert.common import Options, StateReader
from leangen.models.base import PretrainedModel
from leangen.models.cips import CIPSGenerator
from leangen.ops.coords import coordinate_grid

import rosinality_reference as rosi  # tests/: the official blocks, written independently


def _official_channels(cm: int) -> dict[int, int]:
    return {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm, 256: 64 * cm, 512: 32 * cm,
            1024: 16 * cm}


class _Builder:
    """Random tensors under official names (``fill=zeros`` for shape-only states)."""

    def __init__(self, style_dim: int, seed: int, zeros: bool = False):
        self.g = torch.Generator().manual_seed(seed)
        self.sd, self.zeros = style_dim, zeros
        self.s: dict[str, torch.Tensor] = {}

    def r(self, *shape: int, scale: float = 1.0) -> torch.Tensor:
        return torch.zeros(*shape) if self.zeros else torch.randn(*shape, generator=self.g) * scale

    def mapping(self, n_mlp: int) -> None:
        for i in range(1, n_mlp + 1):
            self.s[f"style.{i}.weight"] = self.r(self.sd, self.sd)
            self.s[f"style.{i}.bias"] = self.r(self.sd, scale=0.1)

    def modconv(self, p: str, cin: int, cout: int, k: int) -> None:
        self.s[f"{p}.weight"] = self.r(1, cout, cin, k, k)
        self.s[f"{p}.modulation.weight"] = self.r(cin, self.sd)
        self.s[f"{p}.modulation.bias"] = 1 + self.r(cin, scale=0.1)

    def styled(self, p: str, cin: int, cout: int, k: int) -> None:
        self.modconv(f"{p}.conv", cin, cout, k)
        self.s[f"{p}.noise.weight"] = self.r(1, scale=0.3)
        self.s[f"{p}.activate.bias"] = self.r(cout, scale=0.1)

    def to_rgb(self, p: str, cin: int, up: bool) -> None:
        self.modconv(f"{p}.conv", cin, 3, 1)
        self.s[f"{p}.bias"] = self.r(1, 3, 1, 1, scale=0.1)
        if up:
            self.s[f"{p}.upsample.kernel"] = rosi.blur_kernel()

    def lff(self, p: str, c: int) -> None:
        self.s[f"{p}.ffm.conv.weight"] = self.r(c, 2, 1, 1, scale=1.5)
        self.s[f"{p}.ffm.conv.bias"] = self.r(c, scale=0.5)

    def conv_layer(self, p: str, cin: int, cout: int) -> None:  # EqualConv2d (no bias) + FusedLeakyReLU
        self.s[f"{p}.0.weight"] = self.r(cout, cin, 1, 1)
        self.s[f"{p}.1.bias"] = self.r(cout, scale=0.1)


def official_pixelfolder_state(size: int = 16, style_dim: int = 32, n_mlp: int = 2, cm: int = 2, seed: int = 0,
                               zeros: bool = False) -> dict[str, torch.Tensor]:
    """GeneratorPixelFolder's state dict: stages from the official formula, two folds per stage."""
    b = _Builder(style_dim, seed, zeros)
    ch = _official_channels(cm)
    log_size = int(math.log2(size))
    stages = log_size // 2 - 1
    b.mapping(n_mlp)
    unfolded = 2 ** (log_size - (stages - 1) * 2)
    folded_c, folded = ch[unfolded // 4], unfolded // 4
    b.s["input.input"] = b.r(1, ch[unfolded], unfolded, unfolded)
    k = 0
    for i in range(stages):
        unfolded = 2 ** (log_size - (stages - i - 1) * 2)
        cu = ch[unfolded]
        b.lff(f"lffs.{i}", cu)
        c1 = folded_c * folded * folded // unfolded // unfolded
        if i == 0:
            b.conv_layer(f"posfolders.{i}.conv0", 2 * cu, cu)
        b.conv_layer(f"posfolders.{i}.conv1", cu, c1)
        b.conv_layer(f"posfolders.{i}.conv_merge", 2 * c1 * 16, c1 * 16)
        cin = folded_c
        for fold in range(2):
            cout = ch[folded * 2 ** (fold + 1)]
            b.styled(f"convs.{k}", cin, cout, 3)
            b.styled(f"convs.{k + 1}", cout // 4, cout, 3)
            b.to_rgb(f"to_rgbs.{k // 2}", cout, up=True)
            cin, k = cout, k + 2
        folded_c, folded = cu, unfolded
    return b.s


def official_cips_state(size: int = 16, hidden: int = 16, style_dim: int = 32, n_mlp: int = 2, cm: int = 2,
                        seed: int = 0, zeros: bool = False) -> dict[str, torch.Tensor]:
    """CIPSskip's state dict: widths by pair index from the official table."""
    b = _Builder(style_dim, seed, zeros)
    widths = [512, 512, 512, 512, 256 * cm, 128 * cm, 64 * cm, 32 * cm, 16 * cm]
    b.lff("lff", hidden)
    b.s["emb.input"] = b.r(1, hidden, size, size)
    b.styled("conv1", 2 * hidden, widths[0], 1)
    cin = widths[0]
    for i in range(int(math.log2(size)) - 1):
        b.styled(f"linears.{2 * i}", cin, widths[i], 1)
        b.styled(f"linears.{2 * i + 1}", widths[i], widths[i], 1)
        b.to_rgb(f"to_rgbs.{i}", widths[i], up=False)
        cin = widths[i]
    b.mapping(n_mlp)
    return b.s


# ---------------------------------------------------------------------------------------------------------------------
# Independent functional forwards of the official eval-mode inference (noise left out)

def _coords(b: int, h: int, w: int) -> torch.Tensor:
    x = torch.linspace(-1, 1, w).view(1, 1, 1, w).expand(b, 1, h, w)
    y = torch.linspace(-1, 1, h).view(1, 1, h, 1).expand(b, 1, h, w)
    return torch.cat([x, y], 1)


def _lff(s: dict, p: str, coords: torch.Tensor) -> torch.Tensor:
    return torch.sin(F.conv2d(coords, s[f"{p}.ffm.conv.weight"], s[f"{p}.ffm.conv.bias"]))


def _conv_layer(s: dict, p: str, x: torch.Tensor) -> torch.Tensor:
    wt = s[f"{p}.0.weight"]
    out = F.conv2d(x, wt / math.sqrt(wt.shape[1] * wt.shape[2] * wt.shape[3]))
    return F.leaky_relu(out + s[f"{p}.1.bias"].view(1, -1, 1, 1), 0.2) * math.sqrt(2)


def _fold(x: torch.Tensor) -> torch.Tensor:  # B, C, H, W -> B, 4C, H/2, W/2, channel (ph * 2 + pw) * C + c
    b, c, h, w = x.shape
    return x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 3, 5, 1, 2, 4).reshape(b, 4 * c, h // 2, w // 2)


def _unfold(x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.reshape(b, 2, 2, c // 4, h, w).permute(0, 3, 4, 1, 5, 2).reshape(b, c // 4, 2 * h, 2 * w)


def official_pixelfolder_forward(s: dict, latent: torch.Tensor) -> torch.Tensor:
    """``latent [B, 4S+1, sd]`` -> image, the official synthesis loop."""
    stages = len([k for k in s if re.fullmatch(r"lffs\.\d+\.ffm\.conv\.weight", k)])
    b = latent.shape[0]
    out = s["input.input"].repeat(b, 1, 1, 1)
    skip = None
    for i in range(stages):
        h = out.shape[2] * (4 if i > 0 else 1)
        emb = _lff(s, f"lffs.{i}", _coords(b, h, h))
        if i == 0:
            emb = _conv_layer(s, "posfolders.0.conv0", torch.cat([emb, out], 1))
        x = _fold(_fold(_conv_layer(s, f"posfolders.{i}.conv1", emb)))
        out = x if i == 0 else _conv_layer(s, f"posfolders.{i}.conv_merge", torch.cat([x, out], 1))
        for fold in range(2):
            k = 4 * i + 2 * fold
            out = rosi.styled(s, f"convs.{k}", out, latent[:, k])
            out = rosi.styled(s, f"convs.{k + 1}", _unfold(out), latent[:, k + 1])
            skip = rosi.to_rgb(s, f"to_rgbs.{2 * i + fold}", out, latent[:, k + 2], skip)
    return skip


def official_cips_forward(s: dict, w: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Eval mode: the embedding is grid-sampled (bilinear, border, align_corners=False) at ``coords``."""
    b = w.shape[0]
    coords = coords.expand(b, -1, -1, -1)
    table = s["emb.input"].expand(b, -1, -1, -1)
    emb = F.grid_sample(table, coords.permute(0, 2, 3, 1), mode="bilinear", padding_mode="border",
                        align_corners=False)
    x = rosi.styled(s, "conv1", torch.cat([_lff(s, "lff", coords), emb], 1), w)
    rgb = 0
    i = 0
    while f"to_rgbs.{i}.bias" in s:
        x = rosi.styled(s, f"linears.{2 * i + 1}", rosi.styled(s, f"linears.{2 * i}", x, w), w)
        rgb = rosi.to_rgb(s, f"to_rgbs.{i}", x, w, rgb)
        i += 1
    return rgb


# ---------------------------------------------------------------------------------------------------------------------

def _official_to_leangen(key: str) -> str | None:
    """Where an official tensor lives in the leangen model (None: a constant buffer leangen computes)."""
    if key.endswith("upsample.kernel") or key.endswith("blur.kernel"):
        return None
    key = re.sub(r"^style\.", "mapping.net.", key)
    return re.sub(r"^(lffs\.\d+|lff)\.ffm\.conv\.", r"\1.", key)


def _check_landed(G: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    own = G.state_dict()
    for key, value in state.items():
        target = _official_to_leangen(key)
        if target is not None:
            assert torch.equal(own[target], value), key
    constants = sum(v.numel() for k, v in state.items() if _official_to_leangen(k) is None)
    assert G.num_params() == sum(v.numel() for v in state.values()) - constants


def _save(path, g_ema: dict, g: dict | None = None) -> str:
    torch.save({"g": g if g is not None else g_ema, "d": {"convs.0.0.weight": torch.zeros(1)}, "g_ema": g_ema,
                "args": {"size": 0}}, path)
    return str(path)


@pytest.fixture(scope="module")
def pf16(tmp_path_factory):
    state = official_pixelfolder_state(16, seed=0)
    return _save(tmp_path_factory.mktemp("pf") / "pf16.pt", state, official_pixelfolder_state(16, seed=1)), state


@pytest.fixture(scope="module")
def cips16(tmp_path_factory):
    state = official_cips_state(16, seed=0)
    return _save(tmp_path_factory.mktemp("cips") / "cips16.pt", state), state


# ------------------------------------------------------------------------------------------------------- PixelFolder

def test_pixelfolder_two_stages_compute_the_official_function(tmp_path):
    state = official_pixelfolder_state(64, style_dim=32, n_mlp=3, cm=1, seed=2)
    path = _save(tmp_path / "pf64.pt", state)
    assert detect_format(state) == "pixelfolder"
    G = convert_checkpoint(path, w_avg_samples=100)
    assert G.model_type == "pixelfolder-generator" and G.stage_resolutions == [16, 64] and G.num_ws == 9
    assert G.config["channel_multiplier"] == 1 and G.config["resolution"] == 64 and G.w_dim == 32
    assert len(G.mapping.net) == 4 and G.convs[7].conv.weight.shape == (1, 256, 64, 3, 3)  # ch[64] = 256 * cm
    _check_landed(G, state)
    gen = torch.Generator().manual_seed(3)
    ws = torch.randn(2, G.num_ws, 32, generator=gen)  # distinct w per layer: checks the latent indices too
    z = torch.randn(2, 32, generator=gen)
    with torch.no_grad():
        ref = official_pixelfolder_forward(state, ws)
        ours = G.synthesis(ws, noise_mode="none")
        torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)
        ref_z = official_pixelfolder_forward(state, rosi.mapping(state, z)[:, None].expand(-1, G.num_ws, -1))
        torch.testing.assert_close(G(z, noise_mode="none"), ref_z, rtol=1e-4, atol=1e-4)


def test_pixelfolder_conversion_record_determinism_and_round_trip(pf16, tmp_path):
    path, state = pf16
    G = convert_checkpoint(path, w_avg_samples=200)
    assert G.stage_resolutions == [16] and G.config["resolution"] == 16 and G.input.input.shape == (1, 512, 16, 16)
    _check_landed(G, state)
    rec = G.conversion
    assert rec["format"] == "pixelfolder" and rec["entry"] == "g_ema"
    assert any("noise_const is the model's own draw (seed 0)" in c for c in rec["changes"])
    # the noise_const buffers are seeded: two conversions give the same model, hence the same images
    again = convert_checkpoint(path, w_avg_samples=200)
    a = G.generate(seeds=[0, 7], output_type="pt")
    assert a.shape == (2, 3, 16, 16) and torch.isfinite(a).all()
    assert torch.equal(a, again.generate(seeds=[0, 7], output_type="pt"))
    assert torch.equal(a, G.generate(seeds=[0, 7], output_type="pt"))
    assert torch.equal(a, leangen.load(path).generate(seeds=[0, 7], output_type="pt"))  # converted on the fly
    out = convert_to_directory(path, tmp_path / "pf16", w_avg_samples=200)
    meta = json.loads((out / "config.json").read_text())
    assert meta["converted_from"]["format"] == "pixelfolder" and meta["model_type"] == "pixelfolder-generator"
    loaded = leangen.load(out)
    assert torch.equal(loaded.generate(seeds=[0, 7], output_type="pt"), a)
    assert torch.equal(loaded.mapping.w_avg, G.mapping.w_avg)
    g = convert_checkpoint(path, which="g", w_avg_samples=10)  # the non-EMA generator on request
    assert torch.equal(g.input.input, official_pixelfolder_state(16, seed=1)["input.input"])


def test_pixelfolder_256_official_config_has_the_published_parameter_count():
    state = official_pixelfolder_state(256, style_dim=512, n_mlp=8, cm=2, zeros=True)
    G, changes = formats()["pixelfolder"].convert(StateReader(state, "mem", "pixelfolder"),
                                                  Options({}, formats()["pixelfolder"].options, "pixelfolder"))
    assert G.stage_resolutions == [16, 64, 256] and G.config["channel_multiplier"] == 2
    assert G.num_params() == 20_843_614  # PixelFolder Table 1: 20.84M


def _refused(tmp_path, state: dict, fmt: str | None, match: str) -> None:
    path = _save(tmp_path / "bad.pt", state)
    with pytest.raises(ConversionError, match=match):
        convert_checkpoint(path, fmt=fmt, w_avg_samples=10)


def test_pixelfolder_refusals(pf16, tmp_path):
    _, good = pf16
    missing = {k: v for k, v in good.items() if k != "posfolders.0.conv1.1.bias"}
    _refused(tmp_path, missing, "pixelfolder", r"'posfolders\.0\.conv1\.1\.bias' is missing")
    extra = {**good, "posfolders.0.conv2.0.weight": torch.zeros(4, 4, 1, 1)}
    _refused(tmp_path, extra, None, r"unexpected tensor 'posfolders\.0\.conv2\.0\.weight'")
    wrong = {**good, "convs.1.conv.weight": torch.zeros(1, 512, 64, 3, 3)}  # unfold gives 512 / 4 = 128 inputs
    _refused(tmp_path, wrong, None, r"'convs\.1\.conv\.weight' has shape \[1, 512, 64, 3, 3\].*needs "
                                    r"\[1, 512, 128, 3, 3\]")
    kernel = {**good, "to_rgbs.1.upsample.kernel": torch.ones(4, 4)}
    _refused(tmp_path, kernel, None, r"constant 'to_rgbs\.1\.upsample\.kernel' differs")
    # a 64x64 constant with one stage would be a 64px model, which the official code builds with 2 stages
    stages = {**good, "input.input": torch.zeros(1, 512, 64, 64)}
    _refused(tmp_path, stages, "pixelfolder", r"1 stages .* official PixelFolder builds 2 stages")
    _refused(tmp_path, official_cips_state(8), "pixelfolder", r"looks like a cips checkpoint, not pixelfolder")


# -------------------------------------------------------------------------------------------------------------- CIPS

def test_cips_computes_the_official_eval_function(cips16, tmp_path):
    path, state = cips16
    assert detect_format(state) == "cips"
    G = convert_checkpoint(path, w_avg_samples=200)
    assert isinstance(G, CIPSGenerator) and G.config["embedding_sampling"] == "official_eval"
    assert G.config["resolution"] == 16 and G.config["hidden_size"] == 16 and G.w_dim == 32
    assert [layer.conv.weight.shape[1] for layer in G.linears] == [512] * 6
    _check_landed(G, state)
    assert any("align_corners=False" in c for c in G.conversion["changes"])
    z = torch.randn(2, 32, generator=torch.Generator().manual_seed(4))
    w = rosi.mapping(state, z)
    with torch.no_grad():
        ref = official_cips_forward(state, w, _coords(1, 16, 16))
        torch.testing.assert_close(G(z, noise_mode="none"), ref, rtol=1e-4, atol=1e-4)
        with torch.inference_mode():  # the cached grid features follow the mode too
            torch.testing.assert_close(G(z, noise_mode="none"), ref, rtol=1e-4, atol=1e-4)
        # off the native grid: a larger canvas and a crop, both grid-sampled the official way
        torch.testing.assert_close(G(z, noise_mode="none", size=24),
                                   official_cips_forward(state, w, _coords(1, 24, 24)), rtol=1e-4, atol=1e-4)
        crop = _coords(1, 16, 16)[:, :, 3:9, 5:16]
        torch.testing.assert_close(G(z, noise_mode="none", coords=crop), official_cips_forward(state, w, crop),
                                   rtol=1e-4, atol=1e-4)
    # deterministic, and a save_pretrained round trip keeps the sampling mode and the images
    a = G.generate(seeds=[1, 2], output_type="pt")
    assert torch.equal(a, convert_checkpoint(path, w_avg_samples=200).generate(seeds=[1, 2], output_type="pt"))
    out = convert_to_directory(path, tmp_path / "cips16", w_avg_samples=200)
    assert json.loads((out / "config.json").read_text())["config"]["embedding_sampling"] == "official_eval"
    loaded = PretrainedModel.from_pretrained(out)
    assert loaded.embedding_sampling == "official_eval"
    assert torch.equal(loaded.generate(seeds=[1, 2], output_type="pt"), a)


def test_cips_table_option_and_channel_multiplier(tmp_path):
    state = official_cips_state(64, hidden=8, style_dim=16, cm=1, seed=5)
    path = _save(tmp_path / "cips64.pt", state)
    G = convert_checkpoint(path, options=["embedding_sampling=table"], w_avg_samples=10)
    assert G.config["channel_multiplier"] == 1 and G.config["embedding_sampling"] == "table"
    assert G.to_rgbs[-1].conv.weight.shape == (1, 3, 256, 1, 1)
    _check_landed(G, state)
    with pytest.raises(ConversionError, match="embedding_sampling='nearest'"):
        convert_checkpoint(path, options={"embedding_sampling": "nearest"}, w_avg_samples=10)


def test_cips_refusals(tmp_path):
    good = official_cips_state(8, hidden=8, seed=0)
    _refused(tmp_path, {k: v for k, v in good.items() if k != "linears.3.noise.weight"}, None,
             r"'linears\.3\.noise\.weight' is missing")
    _refused(tmp_path, {**good, "to_rgbs.2.bias": torch.zeros(1, 3, 1, 1)}, None, r"unexpected tensor 'to_rgbs\.2")
    _refused(tmp_path, {**good, "conv1.conv.weight": torch.zeros(1, 512, 8, 1, 1)}, None,
             r"'conv1\.conv\.weight' has shape \[1, 512, 8, 1, 1\].*needs \[1, 512, 16, 1, 1\]")
    _refused(tmp_path, {**good, "to_rgb_last.bias": torch.zeros(1, 3, 1, 1)}, "cips", r"CIPSres")
    _refused(tmp_path, {**good, "emb.input": torch.zeros(1, 8, 12, 12)}, "cips", r"'emb\.input' is 12x12")


def test_cips_cli(tmp_path):
    path = _save(tmp_path / "c8.pt", official_cips_state(8, hidden=8, seed=3))
    res = CliRunner().invoke(cli, ["convert", path, "--from", "cips", "--out", str(tmp_path / "c8"),
                                   "--w-avg-samples", "20"])
    assert res.exit_code == 0, res.output
    assert "cips" in res.output and "align_corners=False" in res.output
    assert leangen.load(tmp_path / "c8").embedding_sampling == "official_eval"


# ------------------------------------------------------------------------------------- CIPS embedding sampling option

def test_cips_official_eval_embedding_sampling_is_grid_sample_without_aligned_corners(tmp_path):
    torch.manual_seed(0)
    cfg = dict(resolution=8, z_dim=16, w_dim=16, mapping_layers=1, hidden_size=4, channel_base=64, max_channels=32)
    official = CIPSGenerator(**cfg, embedding_sampling="official_eval").eval()
    table = CIPSGenerator(**cfg).eval()
    table.load_state_dict(official.state_dict())
    emb = official.emb.input
    grid = coordinate_grid(8, 8)
    direct = F.grid_sample(emb, grid.permute(0, 2, 3, 1), mode="bilinear", padding_mode="border",
                           align_corners=False)  # [1, 4, 8, 8]
    with torch.no_grad():
        feats = official._grid_features(8, 8)  # [1, 64, 2 * hidden], the cached native-grid inputs
        torch.testing.assert_close(feats[0, :, 4:].T.reshape(1, 4, 8, 8), direct)
        assert (feats[0, :, 4:].T.reshape(1, 4, 8, 8) - emb).abs().max() > 1e-2  # not the raw table
        torch.testing.assert_close(table._grid_features(8, 8)[0, :, 4:].T.reshape(1, 4, 8, 8), emb)
        crop = grid[:, :, 2:5, 1:7]
        direct_crop = F.grid_sample(emb, crop.permute(0, 2, 3, 1), mode="bilinear", padding_mode="border",
                                    align_corners=False)
        torch.testing.assert_close(official.input_features(crop)[0, :, 4:].T.reshape(1, 4, 3, 6), direct_crop)
        ws = official.map(torch.randn(2, 16))
        native = official.synthesis(ws, "none")
        torch.testing.assert_close(official.synthesis(ws, "none", coords=grid), native)
        assert (native - table.synthesis(ws, "none")).abs().max() > 1e-4
    official.save_pretrained(tmp_path / "m")
    assert PretrainedModel.from_pretrained(tmp_path / "m").embedding_sampling == "official_eval"
    with pytest.raises(ValueError, match="embedding_sampling"):
        CIPSGenerator(**cfg, embedding_sampling="nearest")
