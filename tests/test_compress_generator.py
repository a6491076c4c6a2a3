"""leangen compress on an unconditional generator (StyleGAN2): gates, exact pruning, condensation from the teacher,
and the whole pipeline through the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

import leangen
from leangen.cli.main import cli
from leangen.compress.prune import build_pruned, prune
from leangen.models.stylegan2 import StyleGAN2Generator
from leangen.ops.group_lasso import channel_scores
from leangen.presets import get_preset
from leangen.profile import count_params
from leangen.train import TrainOptions, train

DATA = "openmoji-32-n64"
TINY = dict(resolution=32, z_dim=32, w_dim=32, mapping_layers=2, channel_base=32, max_channels=32)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEANGEN_CACHE", str(tmp_path_factory.mktemp("cache")))


def _gated(seed: int = 0, dead: float = 0.5) -> StyleGAN2Generator:
    """A gated tiny StyleGAN2 with random gates, about ``dead`` of each width's gates exactly zero, and non-zero
    biases (so a dead channel's activation is not zero: only its gate removes it)."""
    torch.manual_seed(seed)
    g = StyleGAN2Generator(**TINY, channel_gates=True).eval()
    with torch.no_grad():
        assert g.gates is not None
        for gate in g.gates:
            gate.weight.uniform_(0.5, 1.5)
            gate.weight[torch.rand(gate.weight.numel()) < dead] = 0
        for name, p in g.named_parameters():
            if name.endswith("activate.bias") or (name.startswith("to_rgb") and name.endswith(".bias")):
                p.normal_(0, 0.3)
    return g


def test_gates_are_off_by_default_and_identity_when_on() -> None:
    plain = StyleGAN2Generator(**TINY)
    assert not any("gates" in k for k in plain.state_dict())  # converted official weights still load as before
    gated = StyleGAN2Generator(**TINY, channel_gates=True)
    missing = gated.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("gates.") for k in missing)
    z = torch.randn(2, 32)
    with torch.no_grad():
        assert torch.allclose(plain(z, noise_mode="const"), gated(z, noise_mode="const"), atol=1e-6)
    assert len(gated.widths) == len(gated.channel_groups()) == 2 * 5 - 2


def test_pruning_zeroed_gates_is_exact_and_keeps_the_gains(tmp_path: Path) -> None:
    g = _gated()
    pruned, info = prune(g, threshold=1e-4)
    assert all(a < b for a, b in zip(info["channels_after"], info["channels_before"]))
    assert pruned.config["gain_channels"] == g.widths
    z = torch.randn(3, 32)
    with torch.no_grad():
        full, small = g(z, noise_mode="const"), pruned(z, noise_mode="const")
    assert full.abs().mean() > 0.05
    torch.testing.assert_close(small, full, atol=1e-5, rtol=0)
    # the gains matter: the same weights with gains from the pruned widths compute something else (ToRGB)
    config = dict(pruned.config, gain_channels=None)
    regained = StyleGAN2Generator(**config).eval()
    regained.load_state_dict(pruned.state_dict())
    with torch.no_grad():
        assert (regained(z, noise_mode="const") - full).abs().max() > 1e-2
    pruned.save_pretrained(tmp_path / "p")
    back = leangen.load(tmp_path / "p")
    with torch.no_grad():
        torch.testing.assert_close(back(z, noise_mode="const"), small)


def test_gates_scale_the_styles_so_demodulation_drops_the_channel() -> None:
    """A gate on the activations instead would leave the dead channels' weights in the next layer's demodulation:
    pruning would then change the output. Zeroing a gate must equal removing its channel's input columns."""
    g = _gated(seed=1, dead=0.0)
    with torch.no_grad():
        assert g.gates is not None
        g.gates[3].weight[:5] = 0
    kept = [torch.arange(w) for w in g.widths]
    kept[3] = torch.arange(5, g.widths[3])
    z = torch.randn(2, 32)
    with torch.no_grad():
        torch.testing.assert_close(build_pruned(g, kept)(z, noise_mode="const"), g(z, noise_mode="const"),
                                   atol=1e-5, rtol=0)


def test_generator_condensation_learns_from_the_teacher_and_shrinks_every_gate(tmp_path: Path) -> None:
    teacher = tmp_path / "teacher"
    StyleGAN2Generator(**dict(get_preset("stylegan2-tiny32").components["G"][1])).save_pretrained(teacher)
    run = train(TrainOptions(preset="stylegan2-tiny32-condense", data=DATA, outdir=str(tmp_path / "runs"), steps=2,
                             batch=2, tick=0.002, snap=1, device="cpu", progress=False, grid=2, metrics=[],
                             hparams={"init": str(teacher), "teacher": str(teacher), "sparsity": 100.0,
                                      "sparsity_ramp": 1}))
    condensed = leangen.load(run.run_dir)  # the entry is G itself, with gates
    assert isinstance(condensed, StyleGAN2Generator) and condensed.gates is not None
    # every gate starts at 1; two proximal steps of lr λ = 0.2 each, around two Adam steps of at most lr = 0.002
    scores = torch.cat(channel_scores(condensed))
    assert scores.min() >= 0.6 - 0.005 and scores.max() <= 0.6 + 0.005
    # started from the teacher: its first step matched the teacher exactly (gates at 1)
    stats = [json.loads(x) for x in (run.run_dir / "stats.jsonl").read_text().splitlines()]
    assert stats[0]["l1_teacher"] == pytest.approx(0.0, abs=1e-6) and stats[-1]["l1_teacher"] > 0


def test_generator_condensation_resumes_exactly(tmp_path: Path) -> None:
    teacher = tmp_path / "teacher"
    StyleGAN2Generator(**dict(get_preset("stylegan2-tiny32").components["G"][1])).save_pretrained(teacher)

    def opts(root: Path, steps: int) -> TrainOptions:
        return TrainOptions(preset="stylegan2-tiny32-condense", data=DATA, outdir=str(root), steps=steps, batch=2,
                            tick=0.002, snap=1, device="cpu", progress=False, grid=2, metrics=[],
                            hparams={"init": str(teacher), "teacher": str(teacher), "sparsity": 100.0,
                                     "sparsity_ramp": 4})

    straight = train(opts(tmp_path / "a", 2))
    first = train(opts(tmp_path / "b", 1))
    resumed = train(TrainOptions(resume=str(first.run_dir), steps=2, device="cpu", progress=False))
    a = load_file(str(straight.snapshot / "G" / "model.safetensors"))  # type: ignore[operator]
    b = load_file(str(resumed.snapshot / "G" / "model.safetensors"))  # type: ignore[operator]
    assert a.keys() == b.keys() and any(k.startswith("gates.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_compress_cli_on_stylegan2(tmp_path: Path) -> None:
    teacher = train(TrainOptions(preset="stylegan2-tiny32", data=DATA, outdir=str(tmp_path / "runs"), steps=1,
                                 batch=2, tick=0.002, snap=1, device="cpu", progress=False, grid=2,
                                 metrics=[])).run_dir
    out = tmp_path / "compressed"
    args = ["compress", "--network", str(teacher), "--data", DATA, "--outdir", str(out), "--condense-steps", "1",
            "--distill-steps", "1", "--batch", "2", "--gmacs", "0.01", "--min-channels", "4", "--threads", "1",
            "--repeats", "1", "--no-compile", "--metric", "fid32", "--sparsity", "200", "--sparsity-ramp", "1"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "report.json").read_text())
    student = leangen.load(out / "student")
    assert isinstance(student, StyleGAN2Generator) and student.config["channel_gates"]
    assert student.config["channels"] == doc["steps"]["prune"]["channels_after"]
    assert doc["student"]["params"] == count_params(student) < doc["teacher"]["params"]
    assert doc["student"]["gmacs"] <= 0.01 < doc["teacher"]["gmacs"]
    assert doc["metric"] == "fid32" and doc["student"]["value"] > 0 and doc["teacher"]["value"] > 0
    assert doc["student"]["onnx_max_abs_diff"] <= 1e-3 and doc["student"]["latency_ms_ort_t1"] > 0
    index = json.loads(next((out / "condense" / "runs").glob("*/checkpoints/*/index.json")).read_text())
    assert index["objective"] == "condense_distill"
    assert index["modules"]["teacher"]["source"] == str(Path(teacher).resolve())
    stats = [json.loads(x) for x in next((out / "distill" / "runs").glob("*/stats.jsonl")).read_text().splitlines()]
    assert stats[-1]["feature_mse"] >= 0 and stats[-1]["l1_teacher"] > 0  # kept-channel features + outputs


@pytest.mark.parametrize("metric, message", [("psnr", "does not measure a generator's samples"),
                                             ("teacher_psnr", "does not measure a generator's samples")])
def test_compress_refuses_a_translator_metric_for_a_generator(tmp_path: Path, metric: str, message: str) -> None:
    teacher = tmp_path / "teacher"
    StyleGAN2Generator(**dict(get_preset("stylegan2-tiny32").components["G"][1])).save_pretrained(teacher)
    result = CliRunner().invoke(cli, ["compress", "--network", str(teacher), "--preset", "stylegan2-tiny32",
                                      "--data", DATA, "--outdir", str(tmp_path / "c"), "--metric", metric])
    assert result.exit_code != 0 and message in result.output
    assert not (tmp_path / "c").exists()  # refused before any work
