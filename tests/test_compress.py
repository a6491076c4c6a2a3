"""Condense -> prune -> distill -> deploy: the group-lasso step, exact structural pruning (residual coupling,
transposed convs, InstanceNorm), the MACs-budget search, the condense objective's resume, and ``leangen compress``
end to end on the tiny ResNet preset."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

import leangen
from leangen.cli.main import cli
from leangen.ops.group_lasso import channel_scores, proximal_step
from leangen.compress.prune import executed_macs, prune
from leangen.models.resnet_generator import ResnetGenerator
from leangen.models.unet_generator import UnetGenerator
from leangen.profile import count_params
from leangen.train import TrainOptions, train

DATA = "openmoji-seg-32-n64"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEANGEN_CACHE", str(tmp_path_factory.getbasetemp() / "leangen-cache"))


def _norms(model: torch.nn.Module, group) -> list[torch.nn.Module]:
    mods = dict(model.named_modules())
    return [mods[n] for n in group.norms]


def _half_zeroed(seed: int = 0) -> ResnetGenerator:
    """A tiny affine-norm generator whose upper half of every width has γ = β = 0 (in every coupled norm)."""
    torch.manual_seed(seed)
    g = ResnetGenerator(resolution=32, ngf=8, n_blocks=3, norm_affine=True).eval()
    with torch.no_grad():
        for group in g.channel_groups():
            for norm in _norms(g, group):
                c = norm.weight.numel()
                norm.weight.uniform_(0.5, 1.5)
                norm.bias.normal_(0, 0.3)
                norm.weight[c // 2:] = 0
                norm.bias[c // 2:] = 0
    return g


def test_proximal_step_is_a_joint_group_soft_threshold() -> None:
    g = ResnetGenerator(resolution=32, ngf=4, n_blocks=2, norm_affine=True)
    trunk = next(gr for gr in g.channel_groups() if len(gr.norms) > 1)  # down_norm.1 + each block's norm2
    assert len(trunk.norms) == 3
    norms = _norms(g, trunk)
    with torch.no_grad():
        for n in norms:
            n.weight.fill_(0.1)
            n.bias.fill_(0.0)
        norms[0].weight[0] = 3.0  # channel 0: joint norm sqrt(9 + 0.01 + 0.01)
    before = torch.stack([n.weight.detach().clone() for n in norms])
    proximal_step(g, 0.3)
    after = torch.stack([n.weight.detach() for n in norms])
    joint0 = before[:, 0].norm()
    # shrunk, all norms by one factor; the threshold is weighted by sqrt(3 norms)
    assert torch.allclose(after[:, 0], before[:, 0] * (1 - 0.3 * 3 ** 0.5 / joint0))
    assert torch.all(after[:, 1:] == 0)  # joint norm 0.17 < 0.52: the channel is exactly zero in every norm
    scores = channel_scores(g)[trunk.index]
    assert scores[1:].max() == 0 and scores[0] == pytest.approx(after[:, 0].norm() / 3 ** 0.5)  # RMS over norms


def test_pruning_zeroed_channels_is_exact_and_the_result_loads(tmp_path: Path) -> None:
    g = _half_zeroed()
    labels = torch.randint(0, 9, (2, 32, 32), generator=torch.Generator().manual_seed(1))
    pruned, info = prune(g, threshold=1e-4)
    assert info["channels_before"] == [8, 16, 32, 32, 32, 32, 16, 8]
    assert info["channels_after"] == [4, 8, 16, 16, 16, 16, 8, 4]
    with torch.no_grad():
        assert torch.allclose(pruned(labels), g(labels), atol=1e-5)  # removing exact zeros changes nothing
    assert info["macs_after"] == executed_macs("resnet-generator", pruned.config) < info["macs_before"]
    pruned.save_pretrained(tmp_path / "m")
    loaded = leangen.load(tmp_path / "m")
    assert isinstance(loaded, ResnetGenerator) and loaded.config["channels"] == info["channels_after"]
    assert count_params(loaded) == count_params(pruned) < count_params(g)
    with torch.no_grad():
        assert torch.equal(loaded(labels), pruned(labels))
    with pytest.raises(ValueError, match="no per-channel scales to score"):
        prune(ResnetGenerator(resolution=32, ngf=8, n_blocks=1))


def _random_scales(g: torch.nn.Module, zero_fraction: float, seed: int = 0) -> torch.nn.Module:
    """Random (γ, β) in every scored norm (and BatchNorm statistics); a random ``zero_fraction`` of each width's
    channels gets γ = β = 0 in every norm coupled to it."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for group in g.channel_groups():
            norms = _norms(g, group)
            c = norms[0].weight.numel()
            zero = torch.randperm(c, generator=gen)[: int(c * zero_fraction)]
            for norm in norms:
                norm.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                norm.bias.copy_(torch.randn(c, generator=gen) * 0.3)
                if getattr(norm, "running_var", None) is not None:
                    norm.running_mean.copy_(torch.randn(c, generator=gen) * 0.5)
                    norm.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
                norm.weight[zero] = 0
                norm.bias[zero] = 0
    return g.eval()


@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_unet_pruning_of_zeroed_channels_is_exact_and_the_result_loads(norm: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    g = _random_scales(UnetGenerator(resolution=32, ngf=8, num_downs=5, norm=norm, norm_affine=True), 0.5)
    labels = torch.randint(0, 9, (2, 32, 32), generator=torch.Generator().manual_seed(1))
    pruned, info = prune(g, threshold=1e-4)
    # encoder levels 1..3, then decoder levels 4..1; the skip-concatenating decoder convs lost input channels too
    assert info["channels_before"] == [16, 32, 64, 64, 32, 16, 8]
    assert info["channels_after"] == [8, 16, 32, 32, 16, 8, 4]
    assert type(pruned) is UnetGenerator and pruned.config["channels"] == info["channels_after"]
    assert pruned.up[1].in_channels == 16 + 16 - 8 - 8 and pruned.up[0].in_channels == 8 + 4
    with torch.no_grad():
        assert torch.allclose(pruned(labels), g(labels), atol=1e-5)  # removing exact zeros changes nothing
    assert info["macs_after"] == executed_macs("unet-generator", pruned.config) < info["macs_before"]
    pruned.save_pretrained(tmp_path / "m")
    loaded = leangen.load(tmp_path / "m")
    assert isinstance(loaded, UnetGenerator) and count_params(loaded) == count_params(pruned) < count_params(g)
    with torch.no_grad():
        assert torch.equal(loaded(labels), pruned(labels))


@pytest.mark.parametrize("family", ["resnet", "unet"])
def test_pruning_computes_the_original_with_the_pruned_channels_zeroed(family: str) -> None:
    """Pruning live (non-zero) channels: the pruned model is the original whose removed channels output zero."""
    torch.manual_seed(0)
    g = (ResnetGenerator(resolution=32, ngf=8, n_blocks=2, norm_affine=True) if family == "resnet" else
         UnetGenerator(resolution=32, ngf=8, num_downs=4, norm="instance", norm_affine=True))
    g = _random_scales(g, 0.0)
    threshold = torch.cat(channel_scores(g)).median().item()  # about half of the live channels go
    pruned, info = prune(g, threshold=threshold)
    assert sum(info["channels_after"]) < sum(info["channels_before"])
    with torch.no_grad():  # zero what was removed, in every norm of its width
        for group in g.channel_groups():
            gone = torch.ones(g.widths[group.index], dtype=torch.bool)
            gone[info["kept"][group.index]] = False
            for norm in _norms(g, group):
                norm.weight[gone] = 0
                norm.bias[gone] = 0
    labels = torch.randint(0, 9, (2, 32, 32), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = g(labels)
        assert ref.std() > 1e-2 and torch.allclose(pruned(labels), ref, atol=1e-5)


def test_macs_budget_finds_the_smallest_threshold_that_fits() -> None:
    g = _half_zeroed()
    full = executed_macs("resnet-generator", g.config)
    budget = 0.2 * full
    pruned, info = prune(g, macs_budget=budget, min_channels=2)
    assert info["macs_after"] <= budget and min(info["channels_after"]) >= 2
    # minimal: keeping every channel scored at the chosen threshold (one step less pruning) would not fit
    scores = torch.cat(channel_scores(g))
    lower = scores[scores < info["threshold"]].max().item()
    _, looser = prune(g, threshold=lower, min_channels=2)
    assert looser["macs_after"] > budget
    with pytest.raises(ValueError, match="exceeds the budget"):
        prune(g, macs_budget=10.0, min_channels=2)


def test_condense_objective_zeroes_channels_and_resumes_exactly(tmp_path: Path) -> None:
    def opts(root: Path, steps: int) -> TrainOptions:
        # λ = 300: the proximal threshold lr * λ = 0.6 per step wipes out most unit-scale channels in two steps
        return TrainOptions(preset="resnet-tiny32-condense", data=DATA, outdir=str(root), steps=steps, batch=4,
                            tick=0.004, snap=1, device="cpu", progress=False, grid=4, metrics=[],
                            hparams={"sparsity": 300.0, "sparsity_ramp": 1})

    straight = train(opts(tmp_path / "a", 2))
    first = train(opts(tmp_path / "b", 1))
    resumed = train(TrainOptions(resume=str(first.run_dir), steps=2, device="cpu", progress=False))
    a = load_file(str(straight.snapshot / "G" / "model.safetensors"))  # type: ignore[operator]
    b = load_file(str(resumed.snapshot / "G" / "model.safetensors"))  # type: ignore[operator]
    assert all(torch.equal(a[k], b[k]) for k in a)
    condensed = leangen.load(straight.run_dir)  # the entry is G itself
    zeros = int((torch.cat(channel_scores(condensed)) == 0).sum())
    assert zeros > 0


def _no_compiler(*_args, **_kwargs):
    raise RuntimeError("no C++ compiler (test)\nlong compiler log")


def test_compress_cli_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    teacher = train(TrainOptions(preset="resnet-tiny32", data=DATA, outdir=str(tmp_path / "runs"), steps=2, batch=4,
                                 tick=0.004, snap=1, device="cpu", progress=False, grid=4, metrics=[])).run_dir
    out = tmp_path / "compressed"
    args = ["compress", "--network", str(teacher), "--data", DATA, "--outdir", str(out), "--condense-steps", "2",
            "--distill-steps", "2", "--batch", "4", "--gmacs", "0.004", "--min-channels", "2", "--threads", "1",
            "--repeats", "1"]
    monkeypatch.setattr(torch, "compile", _no_compiler)  # torch.compile is on by default: a machine without it
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "| student |" in result.output and "compile 1t (ms)" in result.output
    assert "torch.compile: unavailable: RuntimeError: no C++ compiler (test)." in result.output
    doc = json.loads((out / "report.json").read_text())
    assert (out / "condense" / "channels.png").is_file() and (out / "report.md").is_file()

    student = leangen.load(out / "student")
    t, s = doc["teacher"], doc["student"]
    assert isinstance(student, ResnetGenerator)
    assert student.config["channels"] == doc["steps"]["prune"]["channels_after"]
    assert s["params"] == count_params(student) < t["params"] == count_params(leangen.load(teacher))
    assert s["gmacs"] == pytest.approx(executed_macs("resnet-generator", student.config) / 1e9)
    assert s["gmacs"] <= 0.004 and doc["mac_ratio"] == pytest.approx(t["gmacs"] / s["gmacs"])
    assert doc["mac_ratio"] > 2
    assert s["onnx_max_abs_diff"] <= 1e-3 and s["latency_ms_ort_t1"] > 0 and s["latency_ms_eager_t1"] > 0
    assert s["latency_ms_compile_t1"] is None and s["status_compile"].startswith("unavailable: RuntimeError")
    assert doc["metric"] == "psnr" and 0 < s["value"] < 100
    # the distill step started from the pruned weights and trained against the condensed teacher
    index = json.loads(next((out / "distill" / "runs").glob("*/checkpoints/*/index.json")).read_text())
    assert index["objective"] == "distill"
    assert index["modules"]["teacher"]["source"] == str((out / "condense" / "model").resolve())
    stats = [json.loads(x) for x in next((out / "distill" / "runs").glob("*/stats.jsonl")).read_text().splitlines()]
    assert stats[-1]["feature_mse"] >= 0 and stats[-1]["l1_teacher"] > 0  # kept-channel features + outputs matched

    # Every step is done: a rerun skips them all and leaves the report as it was.
    before = (out / "report.json").read_text()
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0 and (out / "report.json").read_text() == before
    assert "condense:" not in result.output and "distill:" not in result.output


def test_compress_cli_on_the_unet(tmp_path: Path) -> None:
    """The U-Net goes through condense -> prune -> distill like the ResNet (skip concatenations pruned)."""
    teacher = train(TrainOptions(preset="unet-tiny32", data=DATA, outdir=str(tmp_path / "runs"), steps=1, batch=4,
                                 tick=0.004, snap=1, device="cpu", progress=False, grid=4, metrics=[])).run_dir
    out = tmp_path / "compressed"
    args = ["compress", "--network", str(teacher), "--data", DATA, "--outdir", str(out), "--condense-steps", "1",
            "--distill-steps", "1", "--batch", "4", "--gmacs", "0.0015", "--min-channels", "2", "--threads", "1",
            "--repeats", "1", "--no-onnx", "--no-compile"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "report.json").read_text())
    student = leangen.load(out / "student")
    assert isinstance(student, UnetGenerator) and student.config["channels"] == doc["steps"]["prune"]["channels_after"]
    assert doc["student"]["gmacs"] <= 0.0015 < doc["teacher"]["gmacs"] and doc["student"]["status_compile"] == \
        "not requested"
    assert student.translate(torch.zeros(1, 32, 32, dtype=torch.long)).shape == (1, 3, 32, 32)


def test_deploy_times_torch_compile_or_says_why_not(monkeypatch: pytest.MonkeyPatch) -> None:
    from leangen.compress.deploy import measure_latency

    models = {"a": ResnetGenerator(resolution=32, ngf=4, n_blocks=1), "b": UnetGenerator(resolution=32, ngf=4,
                                                                                          num_downs=3)}
    # the "eager" backend runs the dynamo-captured graph uncompiled: the compile path in seconds, no C++ toolchain
    lat = measure_latency(models, threads=(1, 2), warmup=0, repeats=1, compile=True, compile_backend="eager")
    for row in lat.values():
        assert row["status_compile"] == "ok" and row["status_eager"] == "ok"
        assert all(row[f"latency_ms_{t}_t{n}"] > 0 for t in ("eager", "compile") for n in (1, 2))
        assert "latency_ms_ort_t1" not in row  # no onnx_dir: ONNX Runtime not asked for
    monkeypatch.setattr(torch, "compile", _no_compiler)
    lat = measure_latency(models, threads=(1,), warmup=0, repeats=1, compile=True)
    assert lat["a"]["status_compile"] == "unavailable: RuntimeError: no C++ compiler (test)"
    assert lat["a"]["latency_ms_compile_t1"] is None and lat["a"]["latency_ms_eager_t1"] > 0
