"""``leangen compress --target-fps/--target-ms`` (issue 22): widths chosen by latency measured on the target runtime,
the achieved figure measured after export, unreachable or malformed targets refused in one line before training."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

from leangen.cli.main import cli
from leangen.compress.latency import LatencyUnreachable, choose_threshold, measure_ms
from leangen.compress.prune import executed_macs, prune
from leangen.models.resnet_generator import ResnetGenerator

from test_reliability_compress import _private_cache, teacher  # noqa: F401  (fixtures: a 1-step resnet-tiny32)
from test_reliability_verbs import one_line_error  # tests/: one Error: line, no traceback

DATA = "openmoji-seg-32-n64"
FAST = ["--data", DATA, "--condense-steps", "1", "--distill-steps", "1", "--batch", "4", "--min-channels", "2",
        "--threads", "1", "--repeats", "3", "--no-compile", "--device", "cpu"]


def _scored(seed: int = 0) -> ResnetGenerator:
    """A tiny affine-norm generator with distinct random channel scores."""
    torch.manual_seed(seed)
    g = ResnetGenerator(resolution=32, ngf=8, n_blocks=3, norm_affine=True).eval()
    with torch.no_grad():
        mods = dict(g.named_modules())
        for group in g.channel_groups():
            for name in group.norms:
                mods[name].weight.uniform_(0.1, 1.5)
                mods[name].bias.normal_(0, 0.3)
    return g


def test_latency_search_keeps_the_widest_model_that_meets_the_budget() -> None:
    """With a latency proportional to MACs the search must land where the MACs-budget search lands."""
    g = _scored()
    full = executed_macs("resnet-generator", g.config)

    def fake_ms(m: torch.nn.Module) -> float:
        return executed_macs(m.model_type, dict(m.config)) / 1e6

    threshold, table = choose_threshold(g, 0.3 * full / 1e6, fake_ms, min_channels=2)
    _, by_macs = prune(g, macs_budget=0.3 * full, min_channels=2)
    assert threshold == by_macs["threshold"]
    assert table and all(r["latency_ms"] == pytest.approx(r["gmacs"] * 1e3) for r in table)
    with pytest.raises(LatencyUnreachable, match="narrowest") as caught:
        choose_threshold(g, 1e-9, fake_ms, min_channels=2)
    assert caught.value.best_ms > 0


def test_latency_is_measured_on_the_named_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    import leangen.profile.runtimes as runtimes

    calls: list[Any] = []
    real = runtimes.measure_runtimes

    def spy(models: Any, rts: Any, threads: Any, **kw: Any) -> Any:
        calls.append((list(rts), list(threads)))
        return real(models, rts, threads, **kw)

    monkeypatch.setattr(runtimes, "measure_runtimes", spy)
    g = ResnetGenerator(resolution=32, ngf=4, n_blocks=1).eval()
    assert measure_ms(g, "onnxruntime", 1, repeats=1, warmup=0) > 0
    assert measure_ms(g, "torch", 2, repeats=1, warmup=0) > 0
    assert calls == [(["onnxruntime"], [1]), (["torch"], [2])]


@pytest.mark.parametrize("search", ["table", "uniform", "threshold"])
def test_compress_meets_a_latency_target_measured_after_export(teacher: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch, search: str) -> None:
    import leangen
    import leangen.profile.runtimes as runtimes

    # Generous: fifty times the teacher's own measured ONNX Runtime latency, so machine load cannot make it flap
    # (twice flapped, once, with the other test worker and a training run on the same 2 cores)
    budget = 50 * measure_ms(leangen.load(teacher), "onnxruntime", 1, repeats=3)
    asked: list[list[str]] = []
    real = runtimes.measure_runtimes
    monkeypatch.setattr(runtimes, "measure_runtimes", lambda m, rts, *a, **kw: asked.append(list(rts)) or
                        real(m, rts, *a, **kw))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["compress", "--network", str(teacher), "--outdir", str(out), *FAST,
                                      "--no-onnx", "--target-ms", f"{budget:.6f}", "--runtime", "onnxruntime",
                                      "--width-search", search], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "report.json").read_text())
    prune_report = doc["steps"]["prune"]
    if search == "threshold":
        probes = prune_report["latency_search"]
        assert probes and all(r["latency_ms"] > 0 for r in probes)
        timed = len(probes)
    elif search == "uniform":  # the multiplier 1 (every channel above the threshold) meets it: one probe, in bursts
        from leangen.compress.latency import BURSTS

        probes = prune_report["latency_probes"]
        assert len(probes) == 1 and probes[0]["fraction"] == 1.0 and probes[0]["measured_ms"] <= budget
        assert probes[0]["widths"] == prune_report["channels_after"]
        timed = BURSTS
    else:  # the threshold's widths already meet fifty times the teacher's time: one measurement, no table
        rounds = prune_report["latency_rounds"]
        assert len(rounds) == 1 and rounds[0]["measured_ms"] <= budget and rounds[0]["chosen"] == \
            prune_report["channels_after"]
        timed = 1
    assert prune_report["runtime"] == "onnxruntime"
    # the check, every probe of the search and the achieved figure (teacher, then student, each alone) time on
    # ONNX Runtime alone (the step reports time eager PyTorch); deploy times the exported student despite --no-onnx
    from leangen.compress.latency import BURSTS

    assert asked.count(["onnxruntime"]) == timed + 1 + 2 * BURSTS and asked[-2 * BURSTS - 1:] == [
        ["torch", "onnxruntime"]] + [["onnxruntime"]] * (2 * BURSTS)
    target, s = doc["latency_target"], doc["student"]
    assert target["runtime"] == "onnxruntime" and target["threads"] == 1
    assert target["student_ms_interleaved"] == s["latency_ms_ort_t1"] and s["onnx_max_abs_diff"] <= 1e-3
    assert target["student_fps"] == pytest.approx(1000 / target["student_ms"]) and target["resolution"] == 32
    assert len(target["student_ms_bursts"]) == BURSTS and min(target["student_ms_bursts"]) <= target["student_ms"]
    assert target["target_ms"] == pytest.approx(budget, rel=1e-5) and target["met"]
    assert f"student measured after export {target['student_fps']:.1f} FPS" in result.output
    # A rerun on a (now) slower machine resumes: the widths are chosen, the target is not timed again.
    monkeypatch.setattr("leangen.compress.latency.measure_ms", lambda *a, **kw: 1e9)
    result = CliRunner().invoke(cli, ["compress", "--network", str(teacher), "--outdir", str(out), *FAST,
                                      "--no-onnx", "--target-ms", f"{budget:.6f}", "--runtime", "onnxruntime",
                                      "--width-search", search])
    assert result.exit_code == 0, result.output
    # ... but --redo prune times it again, before removing anything: the student stays when it cannot be met
    line = one_line_error(CliRunner().invoke(cli, ["compress", "--network", str(teacher), "--outdir", str(out), *FAST,
                                                   "--no-onnx", "--target-ms", f"{budget:.6f}", "--runtime",
                                                   "onnxruntime", "--width-search", search, "--redo", "prune"]))
    assert "cannot be met" in line and (out / "report.json").is_file() and (out / "student").is_dir(), line


@pytest.mark.parametrize("case", ["unreachable", "zero", "negative", "with_gmacs", "fps_and_ms", "margin_range",
                                  "margin_alone"])
def test_bad_latency_targets_are_refused_in_one_line_before_training(teacher: Path, tmp_path: Path,
                                                                    case: str) -> None:
    extra, expected = {"unreachable": (["--target-fps", "1e6"], "cannot be met"),
                       "zero": (["--target-fps", "0"], "--target-fps must be a positive number"),
                       "negative": (["--target-ms", "-5"], "--target-ms must be a positive number"),
                       "with_gmacs": (["--target-fps", "10", "--gmacs", "0.004"], "--target-fps and --gmacs"),
                       "fps_and_ms": (["--target-fps", "10", "--target-ms", "5"], "one budget"),
                       "margin_range": (["--target-fps", "10", "--latency-margin", "1"],
                                        "--latency-margin must be a fraction in [0, 1)"),
                       "margin_alone": (["--latency-margin", "0.1"], "give --target-fps or --target-ms")}[case]
    out = tmp_path / "out"
    line = one_line_error(CliRunner().invoke(cli, ["compress", "--network", str(teacher), "--outdir", str(out),
                                                   *FAST, *extra]))
    assert expected in line, line
    if case == "unreachable":  # names the best figure this machine reaches
        assert "narrowest model" in line and "FPS" in line and "onnxruntime at 1 thread(s)" in line
    assert not (out / "condense").exists()


def test_a_target_missed_at_the_search_stops_before_distillation(teacher: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine got busier after the option check: the prune step's own measurements refuse it, in one line."""
    monkeypatch.setattr("leangen.compress.latency.check_target", lambda *a: None)
    out = tmp_path / "out"
    line = one_line_error(CliRunner().invoke(cli, ["compress", "--network", str(teacher), "--outdir", str(out),
                                                   *FAST, "--target-fps", "1e6", "--runtime", "torch"]))
    assert "--target-fps 1e+06 on torch at 1 thread(s) cannot be met" in line and "FPS" in line, line
    assert (out / "condense" / "report.json").is_file() and not (out / "distill").exists()
