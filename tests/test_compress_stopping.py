"""Distillation that stops on the validation metric (``leangen compress --distill-eval-every``)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import leangen
from leangen.cli.main import cli
from leangen.compress.stopping import StopRule
from leangen.train import TrainOptions, train

DATA = "openmoji-seg-32-n64"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEANGEN_CACHE", str(tmp_path_factory.getbasetemp() / "leangen-cache"))


def test_gap_follows_the_metric_direction() -> None:
    fid, psnr = StopRule(higher_is_better=False), StopRule(higher_is_better=True)
    assert fid.gap(110.0, 100.0) == pytest.approx(1.10) and fid.gap(90.0, 100.0) == pytest.approx(0.9)
    assert psnr.gap(20.0, 22.0) == pytest.approx(1.10) and psnr.gap(23.0, 22.0) < 1
    assert fid.gap(0.0, 0.0) == 1.0 and math.isinf(fid.gap(0.1, 0.0))  # an L1 of 0 for the teacher: no ratio


def test_quality_target_and_patience() -> None:
    rule = StopRule(quality_target=1.10, patience=2, higher_is_better=False)
    assert rule.reason_to_stop([], 100.0) is None
    assert rule.reason_to_stop([150.0, 120.0], 100.0) is None              # improving, still 20% worse
    assert rule.reason_to_stop([150.0, 120.0, 109.0], 100.0).startswith("quality target met")
    assert rule.reason_to_stop([150.0, 120.0, 125.0], 100.0) is None       # one evaluation without a new best
    assert rule.reason_to_stop([150.0, 120.0, 125.0, 121.0], 100.0) == "no new best in 2 evaluations"
    assert rule.best([150.0, 120.0, 125.0, 120.0]) == 1                   # first of equals: fewer steps
    up = StopRule(quality_target=1.05, higher_is_better=True)
    assert up.best([20.0, 22.0, 21.0]) == 1
    assert up.reason_to_stop([20.0], 21.0).startswith("quality target met")  # 21/20 = 1.05


def _teacher(tmp_path: Path) -> Path:
    return train(TrainOptions(preset="resnet-tiny32", data=DATA, outdir=str(tmp_path / "runs"), steps=2, batch=4,
                              tick=0.004, snap=1, device="cpu", progress=False, grid=4, metrics=[])).run_dir


def _compress(teacher: Path, out: Path, *extra: str) -> object:
    args = ["compress", "--network", str(teacher), "--data", DATA, "--outdir", str(out), "--condense-steps", "2",
            "--batch", "4", "--gmacs", "0.004", "--min-channels", "2", "--threads", "1", "--repeats", "1",
            "--no-compile", "--no-onnx", "--metrics", "l1", *extra]
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def test_distillation_evaluates_keeps_the_best_and_stops(tmp_path: Path) -> None:
    teacher = _teacher(tmp_path)
    out = tmp_path / "c"
    # Patience 1, no target: it stops one evaluation after its best, or at the step limit if every one improved.
    result = _compress(teacher, out, "--distill-steps", "40", "--distill-eval-every", "2", "--patience", "1")
    assert result.exit_code == 0, result.output
    rep = json.loads((out / "distill" / "report.json").read_text())
    evals = rep["evals"]
    values = [e["value"] for e in evals]
    assert [e["step"] for e in evals] == list(range(2, 2 * len(evals) + 1, 2))
    best = min(range(len(values)), key=values.__getitem__)
    assert rep["best_step"] == evals[best]["step"]
    if rep["stopped"].startswith("no new best"):
        assert best == len(values) - 2 and evals[-1]["step"] <= 40  # patience may end it at the limit too
    else:  # every evaluation improved on the last: it ran to the limit
        assert rep["stopped"] == "--distill-steps 40 reached" and values == sorted(values, reverse=True)
    assert rep["teacher_value"] == json.loads((out / "distill" / "evals.json").read_text())["teacher"]
    # the shipped student is the best one, not the last
    student, best_saved = leangen.load(out / "student"), leangen.load(out / "distill" / "best")
    x = torch.randint(0, student.num_classes, (2, 32, 32))
    assert torch.equal(student.translate(x), best_saved.translate(x))
    assert rep["value"] == pytest.approx(values[best], rel=1e-6)


def test_a_met_target_stops_at_the_first_evaluation_and_a_rerun_resumes(tmp_path: Path) -> None:
    teacher = _teacher(tmp_path)
    out = tmp_path / "c"
    args = ("--distill-steps", "6", "--distill-eval-every", "2", "--quality-target", "1000")
    assert _compress(teacher, out, *args).exit_code == 0
    rep = json.loads((out / "distill" / "report.json").read_text())
    assert len(rep["evals"]) == 1 and rep["best_step"] == 2 and rep["stopped"].startswith("quality target met")
    before = (out / "report.json").read_text()
    assert _compress(teacher, out, *args).exit_code == 0 and (out / "report.json").read_text() == before


def test_an_unfinished_distillation_may_be_given_another_step_budget(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopped after its first evaluation (as by Ctrl-C), a distillation reruns with a smaller --distill-steps and
    ships the best student so far; once it has finished, another budget is refused again."""
    import leangen.compress.pipeline as pipeline

    teacher = _teacher(tmp_path)
    out = tmp_path / "c"
    real = pipeline.evaluate
    calls = {"n": 0}

    def stop_after_the_first_student_evaluation(model: object, opts: object) -> float:
        value = real(model, opts)  # type: ignore[arg-type]
        calls["n"] += 1
        if calls["n"] == 5:  # condense, prune, teacher, student at step 2: then "Ctrl-C"
            raise pipeline.CompressInterrupted("stopped for the test")
        return value

    monkeypatch.setattr(pipeline, "evaluate", stop_after_the_first_student_evaluation)
    result = _compress(teacher, out, "--distill-steps", "8", "--distill-eval-every", "2")
    assert result.exit_code == 130 and not (out / "distill" / "report.json").is_file(), result.output
    monkeypatch.setattr(pipeline, "evaluate", real)
    evals = json.loads((out / "distill" / "evals.json").read_text())["evals"]
    assert evals == [] or evals[-1]["step"] == 2  # the evaluation was interrupted before its record
    result = _compress(teacher, out, "--distill-steps", "2", "--distill-eval-every", "2")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "distill" / "report.json").read_text())
    assert report["best_step"] == 2 and report["stopped"] == "--distill-steps 2 reached", report
    assert json.loads((out / "compress.json").read_text())["distill_steps"] == 2
    refused = _compress(teacher, out, "--distill-steps", "4", "--distill-eval-every", "2")
    assert refused.exit_code != 0 and "other options" in refused.output and "distill_steps" in refused.output


def test_stop_options_need_an_evaluation_interval(tmp_path: Path) -> None:
    result = _compress(_teacher(tmp_path), tmp_path / "c", "--distill-steps", "4", "--patience", "2")
    assert result.exit_code != 0 and "need --distill-eval-every" in result.output
