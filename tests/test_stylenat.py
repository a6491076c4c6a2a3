"""StyleNAT: exact paper parameter counts, the Hydra layout, truncation/mixing, backends agreeing inside the generator,
training through the one loop (resume bit-exact), ``leangen generate`` and ONNX export."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import load_file

import leangen
from leangen.cli.main import cli
from leangen.models.stylenat import StyleNATGenerator
from leangen.ops.neighborhood import HydraNeighborhoodAttention2d, RelPosSelfAttention2d
from leangen.registry import get_preset
from leangen.train import TrainOptions, train

# A smaller StyleNAT than the tiny preset for the training tests (seconds per step on 2 shared cores).
SMALL_G = {"channels": [32, 32, 32, 32], "min_heads": 2, "z_dim": 32, "w_dim": 32, "mapping_layers": 2}
SMALL_D = {"channel_base": 16, "max_channels": 16}


def test_paper_parameter_counts_and_layout() -> None:
    counts = {"stylenat-256": (48_921_000, 48.92e6), "stylenat-1024": (49_452_934, 49.45e6)}
    for name, (exact, paper) in counts.items():
        with torch.device("meta"):
            G = get_preset(name).build()
        assert G.num_params() == exact, name
        assert abs(G.num_params() - paper) / paper < 0.001  # the README's figure, well inside the 1%
        assert get_preset(name).paper["params_m"] == pytest.approx(paper / 1e6)
    with torch.device("meta"):
        G = get_preset("stylenat-256").build()
    assert G.num_ws == 14 and G.heads == [16, 16, 16, 16, 16, 8, 4]
    assert isinstance(G.blocks[0].attn, RelPosSelfAttention2d) and G.blocks[0].attn.rpb.shape == (16, 7, 7)
    layout = []
    for blk in G.blocks[2::2]:
        attn = blk.attn
        assert isinstance(attn, HydraNeighborhoodAttention2d)
        layout.append([(n, k[0], d[0]) for n, k, d in zip(attn.split, attn.kernels, attn.dilations)])
    assert layout == [[(16, 7, 1)], [(8, 7, 1), (8, 7, 2)], [(8, 7, 1), (8, 7, 4)], [(8, 7, 1), (8, 7, 8)],
                      [(4, 7, 1), (4, 7, 16)], [(2, 7, 1), (2, 7, 32)]]
    with torch.device("meta"):
        big = get_preset("stylenat-1024").build()
    assert big.num_ws == 18 and big.heads[-2:] == [4, 4] and big.blocks[-1].attn.dilations[-1] == (128, 128)
    with pytest.raises(ValueError, match="exceeds the input height 8"):
        StyleNATGenerator(16, channels=[32, 32, 32], dilations=[[1], [2], [1, 2]], min_heads=1)
    with pytest.raises(ValueError, match="one entry per level"):
        StyleNATGenerator(16, channels=[32, 32])


def test_outputs_truncation_mixing_and_backends() -> None:
    torch.manual_seed(0)
    G = get_preset("stylenat-tiny32").build().eval()
    with torch.no_grad():
        for p in G.parameters():  # the reference init is tiny (std 0.02); larger weights make differences visible
            p.add_(torch.randn_like(p) * 0.05)
        G.mapping(torch.randn(64, G.z_dim), update_w_avg=True)
        z = torch.randn(3, G.z_dim)
        imgs = G.generate([0, 1, 2], output_type="pt")
        assert imgs.shape == (3, 3, 32, 32) and imgs.isfinite().all()
        # psi = 0: every z gives the image of w_avg
        trunc = G(z, truncation_psi=0.0)
        torch.testing.assert_close(trunc[1], trunc[0])
        torch.testing.assert_close(trunc[2], trunc[0])
        # every block reads its own w: changing only the last two ws changes the image, not the first ws
        ws = G.map(z)
        mixed = ws.clone()
        mixed[:, -2:] = G.map(torch.randn(3, G.z_dim))[:, -2:]
        assert (G.synthesis(mixed) - G.synthesis(ws)).abs().max() > 1e-3
        # the NA backends agree inside the generator
        ref = G.synthesis(ws)
        for backend in ("reference", "gather", "tiled"):
            G.set_na_backend(backend)  # type: ignore[arg-type]
            torch.testing.assert_close(G.synthesis(ws), ref, rtol=1e-4, atol=1e-5)


def _opts(tmp_path: Path, **kw) -> TrainOptions:
    base = dict(preset="stylenat-tiny32", data="openmoji-32-n64", outdir=str(tmp_path / "runs"), batch=4, tick=0.008,
                snap=1, device="cpu", progress=False, grid=4, metrics=[], overrides={"G": SMALL_G, "D": SMALL_D})
    base.update(kw)
    return TrainOptions(**base)


def test_tiny_stylenat_trains_resumes_generates_and_exports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEANGEN_CACHE", str(tmp_path / "cache"))
    # R1 every 2 steps (steps 0 and 2, one on each side of the resume) so that the clipped R1 step runs too
    hp = {"r1_interval": 2}
    straight = train(_opts(tmp_path / "a", steps=3, hparams=hp))
    first = train(_opts(tmp_path / "b", steps=1, hparams=hp))
    resumed = train(TrainOptions(resume=str(first.run_dir), steps=3, device="cpu", progress=False))
    for role in ("G", "G_ema", "D"):
        wa = load_file(str(straight.snapshot / role / "model.safetensors"))  # type: ignore[operator]
        wb = load_file(str(resumed.snapshot / role / "model.safetensors"))  # type: ignore[operator]
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), role
    hp_used = json.loads((straight.run_dir / "training_options.json").read_text())["hparams"]
    assert hp_used["d_grad_clip"] == 5.0 and hp_used["g_lr"] == 2.5e-4 and hp_used["d_lr"] == 1e-3  # TTUR + clip
    rows = [json.loads(x) for x in (straight.run_dir / "stats.jsonl").read_text().splitlines()]
    assert {"loss_G", "loss_D", "r1_penalty"} <= set().union(*rows)
    assert list(straight.run_dir.glob("fakes*.png"))  # sample grids
    G = leangen.load(straight.run_dir)
    assert isinstance(G, StyleNATGenerator) and G.config["channels"] == [32, 32, 32, 32]

    runner = CliRunner()
    res = runner.invoke(cli, ["generate", "--network", str(straight.run_dir), "--seeds", "0-1", "--trunc", "0.7",
                              "--outdir", str(tmp_path / "gen"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    imgs = [np.asarray(Image.open(tmp_path / "gen" / f"seed{i:04d}.png")) for i in range(2)]
    assert imgs[0].shape == (32, 32, 3) and not np.array_equal(imgs[0], imgs[1])


def test_onnx_export_with_the_gather_backend_matches_pytorch(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from leangen.export import check_onnx, export_onnx

    torch.manual_seed(0)  # 16 px keeps the export short; every kind of layer is there (4x4 MHSA, Hydra-NA, dilation)
    G = StyleNATGenerator(16, channels=[32, 32, 32], dilations=[[1], [1], [1, 2]], kernels=[[3], [5], [7]], min_heads=2,
                          z_dim=32, w_dim=32, mapping_layers=2, na_backend="gather")
    with torch.no_grad():
        for p in G.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        G.mapping(torch.randn(64, G.z_dim), update_w_avg=True)
        assert G(torch.randn(2, 32), truncation_psi=0.7).std() > 0.05  # not a near-constant image
    path = export_onnx(G, tmp_path / "stylenat.onnx", batch=2, truncation_psi=0.7)
    assert check_onnx(G, path, atol=1e-4, truncation_psi=0.7) < 1e-4
