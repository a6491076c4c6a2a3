"""The CLI verbs dispatch on what a model is: a likelihood model samples with a temperature, a translator needs
label maps, and a verb given the wrong kind of model answers in one line."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from leangen.cli.main import cli
from leangen.train import TrainOptions, train


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("kinds")
    mp = pytest.MonkeyPatch()
    mp.setenv("LEANGEN_CACHE", str(root / "cache"))
    out = {}
    for preset, data in (("independent-pixels-32", "openmoji-32-n64"), ("conv-translator-tiny32", "openmoji-seg-32-n64")):
        res = train(TrainOptions(preset=preset, data=data, outdir=str(root / "runs"), steps=2, batch=8, tick=0.016,
                                 device="cpu", progress=False, grid=4, metrics=[]))
        out[preset] = res.run_dir
    out["cache"] = root / "cache"
    yield out
    mp.undo()


def invoke(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    return result.exit_code, result.output


def test_generate_samples_a_likelihood_model(runs_dir: dict[str, Path], tmp_path: Path) -> None:
    run = str(runs_dir["independent-pixels-32"])
    code, out = invoke(["generate", "--network", run, "--seeds", "0-3", "--temperature", "0.8", "--grid",
                        "--outdir", str(tmp_path / "a")])
    assert code == 0, out
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["grid.png"] + [f"seed{i:04d}.png" for i in range(4)]
    # the same seed gives the same sample in another call, a different temperature another one
    invoke(["generate", "--network", run, "--seeds", "2", "--temperature", "0.8", "--outdir", str(tmp_path / "b")])
    same = [np.asarray(Image.open(d / "seed0002.png")) for d in (tmp_path / "a", tmp_path / "b")]
    assert np.array_equal(*same)
    code, out = invoke(["generate", "--network", run, "--seeds", "0", "--trunc", "0.7", "--outdir", str(tmp_path)])
    assert code == 1 and "holds a likelihood model: --trunc does not apply" in out


def test_translate_writes_the_input_names_and_generate_points_to_it(runs_dir: dict[str, Path],
                                                                     tmp_path: Path) -> None:
    run = str(runs_dir["conv-translator-tiny32"])
    labels = tmp_path / "labels"
    labels.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 9, (32, 32), dtype=np.uint8), mode="L").save(labels / f"{name}.png")
    code, out = invoke(["translate", "--network", run, "--input", str(labels), "--outdir", str(tmp_path / "o")])
    assert code == 0, out
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a.png", "b.png"]
    code, out = invoke(["generate", "--network", run, "--outdir", str(tmp_path / "o")])
    assert code == 1 and "holds a translator" in out and "leangen translate" in out
    Image.fromarray(np.full((32, 32), 12, dtype=np.uint8), mode="L").save(labels / "c.png")
    code, out = invoke(["translate", "--network", run, "--input", str(labels), "--outdir", str(tmp_path / "p")])
    assert code == 1 and "label ids must be in 0..8" in out and "c.png" in out
    assert not (tmp_path / "p").exists()  # validated before anything is written
    Image.new("RGB", (32, 32)).save(labels / "d.png")
    code, out = invoke(["translate", "--network", run, "--input", str(labels / "d.png"), "--outdir", str(tmp_path)])
    assert code == 1 and "RGB image" in out and "d.png" in out


def test_wrong_kind_of_model_is_one_line(runs_dir: dict[str, Path], tmp_path: Path) -> None:
    run = runs_dir["conv-translator-tiny32"]
    likelihood = str(runs_dir["independent-pixels-32"])
    code, out = invoke(["export", "--network", likelihood, "--out", str(tmp_path / "x.onnx")])
    assert code == 1 and "holds a likelihood model" in out and "needs an image generator or a translator" in out
    assert len(out.strip().splitlines()) == 1
    snap = sorted((run / "checkpoints").iterdir())[-1]
    code, out = invoke(["generate", "--network", str(snap / "D"), "--outdir", str(tmp_path)])
    assert code == 1 and "holds a discriminator" in out


def test_eval_bpd_on_the_validation_split(runs_dir: dict[str, Path]) -> None:
    run = runs_dir["independent-pixels-32"]
    code, out = invoke(["eval", "--network", str(run), "--data", "openmoji-32-n64", "--dry-run"])
    assert code == 0 and "split val" in out and "bpd" in out
    assert not (run / "metric-bpd.jsonl").exists()
    code, out = invoke(["eval", "--network", str(run), "--data", "openmoji-32-n64", "--metrics", "bpd"])
    assert code == 0, out
    record = json.loads((run / "metric-bpd.jsonl").read_text().splitlines()[-1])
    assert record["protocol"]["split"] == "val" and 0 < record["results"]["bpd"] <= 8
    code, out = invoke(["eval", "--network", str(run), "--data", "openmoji-32-n64", "--metrics", "bpd,fidd", "--dry-run"])
    assert code != 0 and "fidd" in out


def test_profile_covers_every_kind() -> None:
    code, out = invoke(["profile", "independent-pixels-32", "conv-translator-tiny32", "--device", "cpu",
                        "--repeats", "2", "--json"])
    assert code == 0, out
    rows = {r["name"] if "name" in r else r["model"]: r for r in json.loads(out[out.index("["):])}
    assert rows["independent-pixels-32"]["params"] == 3 * 32 * 32 * 256
    assert rows["conv-translator-tiny32"]["params"] > 0 and rows["conv-translator-tiny32"]["latency_ms"] > 0


def test_eval_defaults_come_from_the_task() -> None:
    """``leangen eval`` without ``--metrics`` measures what the model's task declares (``Task.eval_metrics``), on the
    task's split; a task without a default (unpaired) asks for ``--metrics`` in one line."""
    from leangen.tasks import get_task

    assert get_task("unconditional").eval_metrics == ("fid2k",) and get_task("unconditional").metric_split == "all"
    assert get_task("likelihood").eval_metrics == ("bpd",) and get_task("paired").eval_metrics == ("psnr", "l1")
    code, out = invoke(["eval", "--network", "stylegan2-tiny32", "--data", "openmoji-32-n64", "--dry-run",
                        "--device", "cpu"])
    assert code == 0 and "split all" in out and "fid2k:" in out, out
    code, out = invoke(["eval", "--network", "cyclegan-tiny32", "--data", "openmoji-32-n64", "--dry-run",
                        "--device", "cpu"])
    assert code == 1 and "unpaired task" in out and "--metrics" in out and "Traceback" not in out, out
