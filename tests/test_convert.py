"""Official checkpoints: the shared reading/refusal machinery, the rosinality StyleGAN2 format against an independent
functional forward of the official inference path, the CLI verb and ``leangen.load`` on a checkpoint file."""
from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

import leangen
from leangen.cli.main import cli
from leangen.convert import ConversionError, convert_checkpoint, convert_to_directory, detect_format

import rosinality_reference as rosi  # tests/: the official blocks, written independently


def official_stylegan2_state(resolution: int = 16, style_dim: int = 32, n_mlp: int = 2, seed: int = 0,
                             noise: bool = True) -> dict[str, torch.Tensor]:
    """A state dict in the rosinality key scheme (random weights), written from the format description."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale

    ch = {4: 512, 8: 512, 16: 512, 32: 512}
    s: dict[str, torch.Tensor] = {}
    for i in range(1, n_mlp + 1):
        s[f"style.{i}.weight"] = r(style_dim, style_dim)
        s[f"style.{i}.bias"] = r(style_dim, scale=0.1)
    s["input.input"] = r(1, ch[4], 4, 4)

    def modconv(p: str, cin: int, cout: int, k: int) -> None:
        s[f"{p}.weight"] = r(1, cout, cin, k, k)
        s[f"{p}.modulation.weight"] = r(cin, style_dim)
        s[f"{p}.modulation.bias"] = 1 + r(cin, scale=0.1)

    def styled(p: str, cin: int, cout: int, up: bool) -> None:
        modconv(f"{p}.conv", cin, cout, 3)
        if up:
            s[f"{p}.conv.blur.kernel"] = rosi.blur_kernel()
        s[f"{p}.noise.weight"] = r(1, scale=0.3)
        s[f"{p}.activate.bias"] = r(cout, scale=0.1)

    def to_rgb(p: str, cin: int, up: bool) -> None:
        modconv(f"{p}.conv", cin, 3, 1)
        s[f"{p}.bias"] = r(1, 3, 1, 1, scale=0.1)
        if up:
            s[f"{p}.upsample.kernel"] = rosi.blur_kernel()

    styled("conv1", ch[4], ch[4], False)
    to_rgb("to_rgb1", ch[4], False)
    sizes = [4]
    cin, res, j = ch[4], 8, 0
    while res <= resolution:
        styled(f"convs.{2 * j}", cin, ch[res], True)
        styled(f"convs.{2 * j + 1}", ch[res], ch[res], False)
        to_rgb(f"to_rgbs.{j}", ch[res], True)
        sizes += [res, res]
        cin, res, j = ch[res], res * 2, j + 1
    if noise:
        for k, size in enumerate(sizes):
            s[f"noises.noise_{k}"] = r(1, 1, size, size)
    return s


# ---------------------------------------------------------------------------------------------------------------------
# An independent functional forward of the official inference path (rosinality semantics, randomize_noise=False)

def official_stylegan2_forward(s: dict, z: torch.Tensor, lr_mul: float = 0.01) -> torch.Tensor:
    w = rosi.mapping(s, z, lr_mul)
    noise = [s[f"noises.noise_{k}"] for k in range(len([k for k in s if k.startswith("noises.")]))]
    out = s["input.input"].repeat(z.shape[0], 1, 1, 1)
    out = rosi.styled(s, "conv1", out, w, noise[0])
    skip = rosi.to_rgb(s, "to_rgb1", out, w, None)
    j = 0
    while f"to_rgbs.{j}.bias" in s:
        out = rosi.styled(s, f"convs.{2 * j}", out, w, noise[2 * j + 1], up=True)
        out = rosi.styled(s, f"convs.{2 * j + 1}", out, w, noise[2 * j + 2])
        skip = rosi.to_rgb(s, f"to_rgbs.{j}", out, w, skip)
        j += 1
    return skip


@pytest.fixture(scope="module")
def sg2_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "040000.pt"
    g_ema = official_stylegan2_state(seed=0)
    torch.save({"g": official_stylegan2_state(seed=1), "d": {"convs.0.0.weight": torch.zeros(1)}, "g_ema": g_ema,
                "g_optim": {"state": {}, "param_groups": []}}, path)
    return path, g_ema


def test_stylegan2_converts_to_the_official_function(sg2_ckpt):
    path, state = sg2_ckpt
    G = convert_checkpoint(path, w_avg_samples=500)
    assert G.model_type == "stylegan2-generator" and G.img_resolution == 16 and G.w_dim == 32
    assert G.mapping.net[1].weight.shape == (32, 32) and len(G.mapping.net) == 3
    constants = sum(v.numel() for k, v in state.items() if k.endswith("kernel"))
    assert G.num_params() + sum(b.numel() for n, b in G.named_buffers() if "noise_const" in n) \
        == sum(v.numel() for v in state.values()) - constants
    z = torch.randn(3, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ours = G(z, noise_mode="const")
        ref = official_stylegan2_forward(state, z)
    assert ours.shape == ref.shape == (3, 3, 16, 16)
    assert (ours - ref).abs().max() < 1e-4 * max(1.0, float(ref.abs().max()))
    rec = G.conversion
    assert rec["format"] == "stylegan2" and rec["entry"] == "g_ema" and rec["w_avg"]["estimated_from_z"] == 500


def test_w_avg_is_the_seeded_mean_of_mapped_z(sg2_ckpt):
    path, _ = sg2_ckpt
    a = convert_checkpoint(path, w_avg_samples=300, seed=3)
    b = convert_checkpoint(path, w_avg_samples=300, seed=3)
    z = torch.randn(300, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.allclose(a.mapping.w_avg, a.mapping(z).mean(0), atol=1e-5)
    assert torch.equal(a.mapping.w_avg, b.mapping.w_avg)


def test_stored_latent_avg_is_used(tmp_path):
    state = official_stylegan2_state()
    avg = torch.randn(32)
    torch.save({"g_ema": state, "latent_avg": avg}, tmp_path / "tf.pt")
    G = convert_checkpoint(tmp_path / "tf.pt")
    assert torch.equal(G.mapping.w_avg, avg) and G.conversion["w_avg"] == {"from": "latent_avg stored in the checkpoint"}


def test_entry_g_and_root_state(tmp_path, sg2_ckpt):
    path, _ = sg2_ckpt
    g = convert_checkpoint(path, which="g", w_avg_samples=10)
    assert g.conversion["entry"] == "g"
    assert torch.equal(g.input.input, official_stylegan2_state(seed=1)["input.input"])
    flat = tmp_path / "flat.pth"
    torch.save({f"module.{k}": v for k, v in official_stylegan2_state(noise=False).items()}, flat)  # DataParallel
    G = convert_checkpoint(flat, w_avg_samples=10)
    assert G.conversion["entry"] == "<root>" and any("noise_const drawn" in c for c in G.conversion["changes"])


def _saved(tmp_path, name: str, state: dict) -> str:
    path = tmp_path / name
    torch.save({"g_ema": state}, path)
    return str(path)


def test_refusals_name_the_key(tmp_path):
    state = official_stylegan2_state()
    missing = {k: v for k, v in state.items() if k != "convs.1.activate.bias"}
    with pytest.raises(ConversionError, match=r"'convs\.1\.activate\.bias' is missing"):
        convert_checkpoint(_saved(tmp_path, "m.pt", missing))
    extra = dict(state, **{"convs.9.conv.weight": torch.zeros(1)})
    with pytest.raises(ConversionError, match=r"unexpected tensor 'convs\.9\.conv\.weight'"):
        convert_checkpoint(_saved(tmp_path, "e.pt", extra))
    bad = dict(state, **{"to_rgbs.0.bias": torch.zeros(1, 4, 1, 1)})
    with pytest.raises(ConversionError, match=r"'to_rgbs\.0\.bias' has shape \[1, 4, 1, 1\]"):
        convert_checkpoint(_saved(tmp_path, "s.pt", bad))
    kern = dict(state, **{"convs.0.conv.blur.kernel": torch.ones(4, 4)})
    with pytest.raises(ConversionError, match=r"constant 'convs\.0\.conv\.blur\.kernel' differs"):
        convert_checkpoint(_saved(tmp_path, "k.pt", kern))
    with pytest.raises(ConversionError, match="no option 'label_nc'"):
        convert_checkpoint(_saved(tmp_path, "o.pt", state), options=["label_nc=3"])
    with pytest.raises(ConversionError, match="not a checkpoint of a known format"):
        convert_checkpoint(_saved(tmp_path, "u.pt", {"encoder.weight": torch.zeros(2)}))
    with pytest.raises(ConversionError, match="no entry 'g_running'"):
        convert_checkpoint(_saved(tmp_path, "w.pt", state), which="g_running")


def test_unreadable_files_are_refused_without_unpickling(tmp_path):
    code = tmp_path / "module.pt"
    torch.save({"g_ema": torch.nn.Linear(2, 2)}, code)  # a pickled class: loading it would run its code path
    with pytest.raises(ConversionError, match=r"stores more than tensors \(it pickles torch\.nn\.modules\.linear"):
        convert_checkpoint(code)
    good = tmp_path / "good.pt"
    torch.save({"g_ema": official_stylegan2_state(resolution=8)}, good)
    data = good.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ConversionError, match="truncated or not a PyTorch checkpoint"):
        convert_checkpoint(tmp_path / "trunc.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ConversionError, match="is empty"):
        convert_checkpoint(tmp_path / "empty.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint\n")
    with pytest.raises(ConversionError, match="not a PyTorch checkpoint"):
        convert_checkpoint(tmp_path / "text.pt")


def test_args_namespace_is_allowed(tmp_path):
    import argparse

    torch.save({"g_ema": official_stylegan2_state(resolution=8), "args": argparse.Namespace(size=8, n_mlp=2)},
               tmp_path / "ns.pt")
    assert convert_checkpoint(tmp_path / "ns.pt", w_avg_samples=10).img_resolution == 8


def test_directory_round_trip_and_load(tmp_path, sg2_ckpt):
    path, _ = sg2_ckpt
    out = convert_to_directory(path, tmp_path / "sg2", w_avg_samples=100)
    meta = json.loads((out / "config.json").read_text())
    assert meta["converted_from"]["format"] == "stylegan2" and len(meta["converted_from"]["source_sha256"]) == 64
    a = leangen.load(out).generate(seeds=[1, 2], output_type="pt")
    b = convert_checkpoint(path, w_avg_samples=100).generate(seeds=[1, 2], output_type="pt")
    assert torch.equal(a, b)
    c = leangen.load(path).generate(seeds=[1, 2], output_type="pt")  # converted in memory (10k z for w_avg)
    assert torch.equal(a, c)


def test_cli_convert(tmp_path, sg2_ckpt):
    path, _ = sg2_ckpt
    runner = CliRunner()
    r = runner.invoke(cli, ["convert", str(path), "--out", str(tmp_path / "m"), "--w-avg-samples", "50"])
    assert r.exit_code == 0, r.output
    assert "stylegan2" in r.output and "w_avg estimated from 50 z" in r.output
    r = runner.invoke(cli, ["generate", "--network", str(tmp_path / "m"), "--seeds", "0-1", "--outdir",
                            str(tmp_path / "img"), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "img").glob("*.png"))) == 2
    r = runner.invoke(cli, ["convert", str(path), "--from", "stylenat", "--out", str(tmp_path / "x")])
    assert r.exit_code == 1 and "looks like a stylegan2 checkpoint, not stylenat" in r.output
    assert "Traceback" not in r.output
    (tmp_path / "bad.pt").write_bytes(b"\x80\x02garbage")
    r = runner.invoke(cli, ["convert", str(tmp_path / "bad.pt"), "--out", str(tmp_path / "y")])
    assert r.exit_code == 1 and r.output.count("\n") == 1 and "not a PyTorch checkpoint" in r.output
    assert not (tmp_path / "y").exists()  # nothing written for a refused file
    r = runner.invoke(cli, ["convert", "--list-options"])
    assert r.exit_code == 0 and "lr_mlp" in r.output


def test_detect_format(sg2_ckpt):
    _, state = sg2_ckpt
    assert detect_format(state) == "stylegan2"
    assert detect_format({"foo.weight": torch.zeros(1)}) is None
