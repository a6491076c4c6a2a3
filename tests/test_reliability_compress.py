"""Reliability of ``leangen compress`` (issue 19, items 1-3): Ctrl-C stops the pipeline with a snapshot and status
130, a crashed step resumes, a rerun with other options is refused, and every option is checked before training."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from leangen import runs
from leangen.cli.main import cli
from leangen.compress.pipeline import CompressOptions
from leangen.train import TrainOptions, train
from leangen.train.condense import CondenseObjective

from test_reliability_verbs import one_line_error  # tests/: one Error: line, no traceback

DATA = "openmoji-seg-32-n64"
FAST = ["--data", DATA, "--condense-steps", "2", "--distill-steps", "1", "--batch", "4", "--min-channels", "2",
        "--threads", "1", "--repeats", "1", "--no-onnx", "--no-compile", "--device", "cpu"]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEANGEN_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("teacher")
    return train(TrainOptions(preset="resnet-tiny32", data=DATA, outdir=str(out), steps=1, batch=4, tick=0.004,
                              snap=1, device="cpu", progress=False, grid=4, metrics=[])).run_dir


def compress(teacher: Path, out: Path, *extra: str) -> Any:
    return CliRunner().invoke(cli, ["compress", "--network", str(teacher), "--outdir", str(out), *FAST, *extra])


def _signal_at(monkeypatch: pytest.MonkeyPatch, at_step: int, sig: int = signal.SIGINT) -> None:
    """Ctrl-C (a real SIGINT to this process) while condense training is at ``at_step``."""
    original = CondenseObjective.train_step

    def step(self: Any, batch: Any, i: int) -> Any:
        if i == at_step:
            os.kill(os.getpid(), sig)
        return original(self, batch, i)

    monkeypatch.setattr(CondenseObjective, "train_step", step)


def _ctrl_c_in_prune(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: Any, **kw: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr("leangen.compress.prune.prune", interrupted)


def test_compress_ctrl_c_stops_the_pipeline_and_the_rerun_resumes_exactly(teacher: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # Ctrl-C during condense: the pipeline stops there (not only the step), with a snapshot and status 130.
    out = tmp_path / "out"
    with monkeypatch.context() as m:
        _signal_at(m, at_step=0)
        result = compress(teacher, out)
    assert result.exit_code == 130, result.output
    assert "condense stopped at step 1 of 2" in result.output
    assert not (out / "condense" / "report.json").exists() and not (out / "prune").exists()
    run = runs.latest_run(out / "condense" / "runs")
    assert run is not None and runs.latest_snapshot(run) is not None

    # Reference: condense uninterrupted, then Ctrl-C in the prune step (outside training): also status 130.
    ref = tmp_path / "ref"
    with monkeypatch.context() as m:
        _ctrl_c_in_prune(m)
        result = compress(teacher, ref)
    assert result.exit_code == 130 and "Interrupted" in result.output, result.output
    assert (ref / "condense" / "report.json").is_file() and not (ref / "prune").exists()

    # The rerun resumes condense from that snapshot and ends bit-identical to the uninterrupted one.
    with monkeypatch.context() as m:
        _ctrl_c_in_prune(m)
        assert compress(teacher, out).exit_code == 130
    a, b = (load_file(str(d / "condense" / "model" / "model.safetensors")) for d in (ref, out))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    # And the next rerun finishes every step.
    result = compress(teacher, out)
    assert result.exit_code == 0, result.output
    assert "| student |" in result.output and (out / "student" / "config.json").is_file()


def test_compress_killed_step_resumes_and_a_rerun_with_other_options_is_refused(teacher: Path, tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"

    def crash(self: Any, batch: Any, i: int) -> Any:  # a crash (kill -9, power loss) in the first condense step
        raise SystemExit("killed")

    with monkeypatch.context() as m:
        m.setattr(CondenseObjective, "train_step", crash)
        assert compress(teacher, out).exit_code != 0
    assert (out / "condense" / "runs").is_dir() and runs.latest_run(out / "condense" / "runs") is None

    result = compress(teacher, out)  # resumes: the snapshot-less run is left behind, the step starts afresh
    assert result.exit_code == 0, (result.output, result.exception)
    report = (out / "report.json").read_text()

    line = one_line_error(compress(teacher, out, "--gmacs", "0.004"))
    assert "started with other options" in line and "macs_budget" in line and "--overwrite" in line
    assert (out / "report.json").read_text() == report  # nothing was redone or printed from the old report

    from leangen.compress import checks

    opts = CompressOptions(teacher=str(teacher), data=DATA, outdir=str(out), condense_steps=2, distill_steps=1,
                           batch=4, min_channels=2, threads=[1], repeats=1, compile=False, onnx=False,
                           macs_budget=0.004, overwrite=True)
    checks.claim_outdir(opts)  # --overwrite: a fresh start, under the new options
    assert sorted(p.name for p in out.iterdir()) == [checks.IDENTITY_NAME]
    assert json.loads((out / checks.IDENTITY_NAME).read_text())["macs_budget"] == 0.004


def test_compress_redo_keeps_the_condensation_and_redoes_the_later_steps(teacher: Path, tmp_path: Path) -> None:
    """Another budget on a finished folder is refused with a hint; ``--redo prune`` reuses the condensed model
    byte for byte and prunes, distills and deploys again under the new budget, which the record then holds."""
    out = tmp_path / "out"
    assert compress(teacher, out).exit_code == 0
    condensed = (out / "condense" / "model" / "model.safetensors").read_bytes()
    condense_report = (out / "condense" / "report.json").read_text()
    before = json.loads((out / "prune" / "report.json").read_text())

    line = one_line_error(compress(teacher, out, "--gmacs", "0.004"))
    assert "macs_budget" in line and "--redo prune" in line
    line = one_line_error(compress(teacher, out, "--sparsity", "0.5", "--redo", "prune"))
    assert "sparsity" in line and "--redo" not in line  # condensation reads it: only --overwrite may change it
    assert (out / "report.json").is_file() and (out / "prune" / "report.json").is_file()  # refused: nothing removed

    result = compress(teacher, out, "--gmacs", "0.004", "--redo", "prune")
    assert result.exit_code == 0, (result.output, result.exception)
    assert (out / "condense" / "model" / "model.safetensors").read_bytes() == condensed
    assert (out / "condense" / "report.json").read_text() == condense_report
    after = json.loads((out / "prune" / "report.json").read_text())
    assert after["macs_after"] <= 0.004e9 and after["channels_after"] != before["channels_after"]
    assert json.loads((out / "report.json").read_text())["student"]["gmacs"] == pytest.approx(after["gmacs"])
    assert json.loads((out / "compress.json").read_text())["macs_budget"] == 0.004
    assert compress(teacher, out, "--gmacs", "0.004").exit_code == 0  # a rerun without --redo resumes: done


def test_compress_options_of_steps_not_yet_started_may_change(tmp_path: Path) -> None:
    """Stopped during condensation, a rerun may take another budget (prune has not started) but not another
    sparsity; once prune has started, its budget is fixed unless --redo prune."""
    from leangen.compress import checks

    out = tmp_path / "out"

    def opts(**kw: Any) -> CompressOptions:
        return CompressOptions(teacher=str(tmp_path / "t"), data=DATA, outdir=str(out), **kw)

    checks.claim_outdir(opts(macs_budget=0.01))
    (out / "condense").mkdir()
    checks.claim_outdir(opts(macs_budget=0.02))
    assert json.loads((out / checks.IDENTITY_NAME).read_text())["macs_budget"] == 0.02
    with pytest.raises(ValueError, match="sparsity") as e:
        checks.claim_outdir(opts(macs_budget=0.02, sparsity=0.5))
    assert "--redo" not in str(e.value)
    (out / "prune").mkdir()
    with pytest.raises(ValueError, match="--redo prune"):
        checks.claim_outdir(opts(macs_budget=0.03))
    checks.claim_outdir(opts(macs_budget=0.02, hparams={"distill": {"lr": 0.001}}))  # distill has not started
    checks.claim_outdir(opts(macs_budget=0.03, hparams={"distill": {"lr": 0.001}}, redo="prune"))
    assert (out / "condense").is_dir() and not (out / "prune").exists()
    assert json.loads((out / checks.IDENTITY_NAME).read_text())["macs_budget"] == 0.03


@pytest.mark.parametrize("case", ["missing", "likelihood", "not_prunable", "metric", "metric_kind", "threads_abc",
                                  "threads_0", "gmacs_negative", "gmacs_tiny", "unpaired", "device_tpu"])
def test_compress_options_are_checked_before_any_training(teacher: Path, tmp_path: Path, case: str) -> None:
    from leangen.registry import get_preset

    network = teacher
    extra: list[str] = []
    if case == "missing":
        network = tmp_path / "no-such-run"
    elif case in ("likelihood", "not_prunable"):
        network = tmp_path / case
        preset = "independent-pixels-32" if case == "likelihood" else "conv-translator-tiny32"
        get_preset(preset).build(get_preset(preset).main_component).save_pretrained(network)
    else:
        extra = {"metric": ["--metric", "fid_x"], "metric_kind": ["--metric", "fid2k"],
                 "threads_abc": ["--threads", "abc"], "threads_0": ["--threads", "0"],
                 "gmacs_negative": ["--gmacs", "-1"], "gmacs_tiny": ["--gmacs", "1e-12"],
                 "unpaired": ["--data", "openmoji-32-n64"], "device_tpu": ["--device", "tpu"]}[case]
    out = tmp_path / "out"
    line = one_line_error(compress(network, out, *extra))
    expected = {"missing": "no teacher at", "likelihood": "likelihood", "not_prunable": "without prunable channels",
                "metric": "fid_x", "metric_kind": "translated pairs", "threads_abc": "--threads",
                "threads_0": "--threads", "gmacs_negative": "--gmacs", "gmacs_tiny": "narrowest model",
                "unpaired": "pairs", "device_tpu": "tpu"}[case]
    assert expected in line, line
    assert not (out / "condense").exists()  # refused before any training


def test_compress_takes_a_snapshot_folder_as_teacher(teacher: Path, tmp_path: Path) -> None:
    snap = runs.latest_snapshot(teacher)
    # The teacher and its preset are accepted: the first thing refused is the metric, still before any training.
    line = one_line_error(compress(snap, tmp_path / "out", "--metric", "fid_x"))  # type: ignore[arg-type]
    assert "fid_x" in line and "preset" not in line and not (tmp_path / "out" / "condense").exists()
