"""Reliability of translate, create-pairs, convert, generate, eval and train (issue 19, items 4-11): bad inputs give
one line, nothing is written over inputs or models, results are written as they come, fallbacks are said."""
from __future__ import annotations

import json
import math
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import leangen
from leangen import runs
from leangen.cli.main import cli
from leangen.registry import get_preset

from test_convert import official_stylegan2_state  # tests/: a rosinality checkpoint written from the format


def run_cli(args: list[str]) -> Any:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)


def one_line_error(result: Any) -> str:
    """The ``Error: ...`` line of a failed command (exit 1, or 2 for a usage error), without a traceback."""
    assert result.exit_code in (1, 2), (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [ln for ln in result.output.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def label_png(path: Path, h: int, w: int, k: int = 9) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.arange(h * w).reshape(h, w) % k).astype(np.uint8), "L").save(path)
    return path


def bomb_png(path: Path, side: int = 20000) -> Path:
    """A few hundred bytes of PNG whose header declares ``side`` x ``side`` pixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = zlib.compress(b"\x00" * (side + 1) * 8)  # a few rows only: the decoder would fail long after allocating
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", raw) + chunk(b"IEND", b""))
    return path


# ----------------------------------------------------------------------------------------------------------------------
# 4-6. translate: input sizes, overwriting, decompression bombs

@pytest.mark.parametrize("h,w", [(30, 30), (33, 33), (1, 1), (2, 64)])
def test_translate_refuses_sizes_the_translator_cannot_keep(tmp_path: Path, h: int, w: int) -> None:
    label_png(tmp_path / "in" / "a.png", h, w)
    line = one_line_error(run_cli(["translate", "--network", "resnet-tiny32", "--input", tmp_path / "in",
                                   "--outdir", tmp_path / "out", "--device", "cpu"]))
    assert f"a {w}x{h} input" in line and "multiples of 4" in line
    assert not (tmp_path / "out" / "a.png").exists()


def test_translate_never_writes_over_its_inputs_and_refuses_name_collisions(tmp_path: Path) -> None:
    labels = tmp_path / "labels"
    before = label_png(labels / "a.png", 32, 32).read_bytes()
    line = one_line_error(run_cli(["translate", "--network", "resnet-tiny32", "--input", labels, "--outdir", labels,
                                   "--device", "cpu"]))
    assert "input folder" in line and (labels / "a.png").read_bytes() == before
    line = one_line_error(run_cli(["translate", "--network", "resnet-tiny32", "--input", labels / "a.png",
                                   "--outdir", labels, "--device", "cpu"]))
    assert "overwrite" in line and (labels / "a.png").read_bytes() == before

    faces = tmp_path / "faces"
    faces.mkdir()
    for ext in ("png", "jpg"):
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(faces / f"face.{ext}")
    line = one_line_error(run_cli(["translate", "--network", "cyclegan-tiny32", "--input", faces,
                                   "--outdir", tmp_path / "out", "--device", "cpu"]))
    assert "face.jpg" in line and "face.png" in line and not (tmp_path / "out").exists()


@pytest.mark.parametrize("verb", ["translate-labels", "translate-images", "create-pairs"])
def test_decompression_bombs_are_refused_from_the_header(tmp_path: Path, verb: str) -> None:
    if verb == "translate-labels":
        args = ["translate", "--network", "resnet-tiny32", "--input", bomb_png(tmp_path / "in" / "b.png"),
                "--outdir", tmp_path / "out", "--device", "cpu"]
    elif verb == "translate-images":
        args = ["translate", "--network", "cyclegan-tiny32", "--input", bomb_png(tmp_path / "in" / "b.png"),
                "--outdir", tmp_path / "out", "--device", "cpu"]
    else:
        label_png(tmp_path / "labels" / "b.png", 32, 32)
        bomb_png(tmp_path / "images" / "b.png")
        args = ["dataset", "create-pairs", "--labels", tmp_path / "labels", "--images", tmp_path / "images",
                "--dest", tmp_path / "pairs"]
    line = one_line_error(run_cli(args))
    assert "b.png" in line and "refused" in line and "pixels" in line
    assert not (tmp_path / "out").exists() and not (tmp_path / "pairs").exists()


# ----------------------------------------------------------------------------------------------------------------------
# 7. create-pairs: many classes, duplicate names

def test_create_pairs_stores_more_than_256_classes_losslessly(tmp_path: Path) -> None:
    from leangen.data.paired_folders import open_pairs

    ids = (np.arange(32 * 32).reshape(32, 32) * 7 % 300).astype(np.uint16)  # ids 0..299
    (tmp_path / "labels").mkdir()
    (tmp_path / "images").mkdir()
    Image.fromarray(ids).save(tmp_path / "labels" / "p0.png")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "images" / "p0.png")
    result = run_cli(["dataset", "create-pairs", "--labels", tmp_path / "labels", "--images", tmp_path / "images",
                      "--dest", tmp_path / "pairs"])
    assert result.exit_code == 0, result.output
    assert "300 classes" in result.output
    ds = open_pairs(tmp_path / "pairs")
    assert ds.num_classes == 300 and np.array_equal(ds.labels[0].numpy(), ids.astype(np.int64))


def test_create_pairs_refuses_two_files_with_one_name(tmp_path: Path) -> None:
    label_png(tmp_path / "labels" / "p0.png", 32, 32)
    for ext in ("png", "jpg"):
        (tmp_path / "images").mkdir(exist_ok=True)
        image = np.full((32, 32, 3), 9 if ext == "png" else 200, np.uint8)
        Image.fromarray(image).save(tmp_path / "images" / f"p0.{ext}")
    line = one_line_error(run_cli(["dataset", "create-pairs", "--labels", tmp_path / "labels", "--images",
                                   tmp_path / "images", "--dest", tmp_path / "pairs"]))
    assert "p0.jpg" in line and "p0.png" in line and not (tmp_path / "pairs").exists()


# ----------------------------------------------------------------------------------------------------------------------
# 8. The snapshot fallback is said, recorded, and snapshots without checksums are refused

def _tiny_g_run(tmp_path: Path) -> tuple[Path, list[Path]]:
    G = get_preset("stylegan2-tiny32").build("G")
    run = tmp_path / "runs" / "00000-tiny"
    run.mkdir(parents=True)
    (run / "training_options.json").write_text(json.dumps({"preset": "stylegan2-tiny32"}))
    snaps = [runs.save_snapshot(run, f"snapshot-{i:06d}", {"G_ema": G}, {"format": runs.STATE_FORMAT, "step": i},
                                index={"entry": "G_ema"}) for i in range(2)]
    data = bytearray((snaps[1] / "G_ema" / "model.safetensors").read_bytes())
    data[-10] ^= 0xFF  # the newest snapshot is damaged
    (snaps[1] / "G_ema" / "model.safetensors").write_bytes(bytes(data))
    return run, snaps


def test_cli_says_which_snapshot_it_used_and_eval_records_it(tmp_path: Path) -> None:
    run, (old, new) = _tiny_g_run(tmp_path)
    result = run_cli(["generate", "--network", run, "--seeds", "0", "--outdir", tmp_path / "gen", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and old.name in result.output and new.name in result.output

    result = run_cli(["eval", "--network", run, "--teacher", old, "--metrics", "teacher_psnr2", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and old.name in result.output
    record = json.loads((run / "metric-teacher_psnr2.jsonl").read_text().splitlines()[-1])
    assert record["snapshot"] == str(old)


@pytest.mark.parametrize("index", ["missing", "empty"])
def test_snapshot_without_checksums_is_refused(tmp_path: Path, index: str) -> None:
    _, (old, _) = _tiny_g_run(tmp_path)
    if index == "missing":
        (old / runs.INDEX_NAME).unlink()
    else:
        (old / runs.INDEX_NAME).write_text(json.dumps({"entry": "G_ema", "files": {}}))
    with pytest.raises(runs.CorruptSnapshotError, match="cannot be checked"):
        leangen.load(old)
    with pytest.raises(runs.CorruptSnapshotError, match="cannot be checked"):
        runs.load_state(old)
    line = one_line_error(run_cli(["generate", "--network", old, "--seeds", "0", "--outdir", tmp_path / "g",
                                   "--device", "cpu"]))
    assert "cannot be checked" in line


# ----------------------------------------------------------------------------------------------------------------------
# 9. convert

@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    path = tmp_path / "sg2.pt"
    torch.save({"g_ema": official_stylegan2_state(resolution=8)}, path)
    return path


def test_convert_refuses_text_with_a_pickle_opcode(tmp_path: Path) -> None:
    text = tmp_path / "notes.pt"
    text.write_text("(these are my notes, not a checkpoint)\n")  # '(' is the pickle MARK opcode
    line = one_line_error(run_cli(["convert", text, "--out", tmp_path / "m"]))
    assert "not a PyTorch checkpoint" in line
    line = one_line_error(run_cli(["generate", "--network", text, "--seeds", "0", "--outdir", tmp_path / "g"]))
    assert "not a PyTorch checkpoint" in line


@pytest.mark.parametrize("where", ["tensor", "latent_avg", "option"])
def test_convert_refuses_non_finite_values(tmp_path: Path, where: str) -> None:
    state = official_stylegan2_state(resolution=8)
    doc: dict[str, Any] = {"g_ema": state}
    args: list[Any] = ["--w-avg-samples", "10"]
    if where == "tensor":
        state["convs.0.conv.weight"][0, 0, 0, 0, 0] = math.nan
    elif where == "latent_avg":
        doc["latent_avg"] = torch.full((32,), math.nan)
    else:
        args += ["--option", "lr_mlp=nan"]
    torch.save(doc, tmp_path / "bad.pt")
    line = one_line_error(run_cli(["convert", tmp_path / "bad.pt", "--out", tmp_path / "m", *args]))
    assert ("non-finite" in line or "finite number" in line) and not (tmp_path / "m").exists()


def test_convert_never_writes_over_a_model_or_into_a_run(tmp_path: Path, ckpt: Path) -> None:
    model = tmp_path / "model"
    assert run_cli(["convert", ckpt, "--out", model, "--w-avg-samples", "10"]).exit_code == 0
    before = (model / "model.safetensors").read_bytes()
    line = one_line_error(run_cli(["convert", ckpt, "--out", model, "--w-avg-samples", "20"]))
    assert "--overwrite" in line and (model / "model.safetensors").read_bytes() == before
    result = run_cli(["convert", ckpt, "--out", model, "--w-avg-samples", "20", "--overwrite"])
    assert result.exit_code == 0, result.output

    run, _ = _tiny_g_run(tmp_path)
    line = one_line_error(run_cli(["convert", ckpt, "--out", run, "--w-avg-samples", "10", "--overwrite"]))
    assert "training run" in line and not (run / "config.json").exists()


def test_convert_refuses_a_repeated_option(tmp_path: Path, ckpt: Path) -> None:
    line = one_line_error(run_cli(["convert", ckpt, "--out", tmp_path / "m", "--option", "lr_mlp=0.01",
                                   "--option", "lr_mlp=0.02"]))
    assert "lr_mlp" in line and "twice" in line


def test_refused_inception_weights_are_one_line(tmp_path: Path) -> None:
    from leangen.metrics.inception import InceptionWeightsError
    from leangen.metrics.inception.weights import load_state_dict

    torch.save({"layer": torch.nn.Linear(2, 2)}, tmp_path / "pickled.pt")  # needs weights_only=False to load
    with pytest.raises(InceptionWeightsError) as info:
        load_state_dict(tmp_path / "pickled.pt")
    text = str(info.value)
    assert "\n" not in text and "pickles torch.nn.modules.linear" in text and "pickled.pt" in text


# ----------------------------------------------------------------------------------------------------------------------
# 10. generate

@pytest.mark.parametrize("value", ["nan", "inf", "1e-310", "0"])
def test_generate_refuses_temperatures_that_give_black_images(tmp_path: Path, value: str) -> None:
    line = one_line_error(run_cli(["generate", "--network", "independent-pixels-32", "--seeds", "0",
                                   "--temperature", value, "--outdir", tmp_path / "g", "--device", "cpu"]))
    assert "--temperature" in line


def test_likelihood_samples_are_written_as_they_come(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from leangen.models.base import LikelihoodModel

    original, calls = LikelihoodModel.generate, []

    def generate(self: Any, seeds: Any, *args: Any, **kw: Any) -> Any:
        calls.append(seeds)
        if len(calls) > 1:  # Ctrl-C while the second seed is sampled
            raise KeyboardInterrupt
        return original(self, seeds, *args, **kw)

    monkeypatch.setattr(LikelihoodModel, "generate", generate)
    result = run_cli(["generate", "--network", "independent-pixels-32", "--seeds", "0-3", "--outdir",
                      tmp_path / "g", "--device", "cpu"])
    assert result.exit_code != 0
    assert (tmp_path / "g" / "seed0000.png").is_file()


def test_generate_bounds_the_size_of_pixel_synthesis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from leangen.models.cips import CIPSGenerator

    def never(*args: Any, **kw: Any) -> Any:  # the old behaviour: a 4 GiB allocation at 4096 x 4096
        raise AssertionError("rendered")

    monkeypatch.setattr(CIPSGenerator, "synthesis", never)
    line = one_line_error(run_cli(["generate", "--network", "cips-tiny32", "--seeds", "0", "--size", "4096",
                                   "--outdir", tmp_path / "g", "--device", "cpu"]))
    assert "4096x4096" in line and "limit" in line


# ----------------------------------------------------------------------------------------------------------------------
# 11. train

def test_train_refuses_a_metric_the_data_cannot_feed_before_training(tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "one" / "a.png")
    result = run_cli(["train", "--preset", "stylegan2-tiny32", "--data", tmp_path / "one", "--steps", "1",
                      "--batch", "2", "--metrics", "fid10", "--outdir", tmp_path / "runs", "--device", "cpu",
                      "--no-progress"])
    line = one_line_error(result)
    assert "fid10" in line and "at least 2" in line
    assert result.output.count("at least 2") == 1  # said once, not by the loop, the log and the CLI
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # no run, no training
