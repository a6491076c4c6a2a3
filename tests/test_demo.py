"""``leangen demo`` starts from the model zoo: a sample grid per generator, translations per translator and bits/dim
per likelihood model, from a fake zoo in tmp_path; an empty zoo is said and the training part follows."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from leangen import zoo
from leangen.cli import demo
from leangen.cli.main import cli
from test_zoo import make_entry  # tests/: the fake entry, as benchmarks/zoo.py writes one


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LEANGEN_CACHE", str(tmp_path / "cache"))  # never the user's cache; subsets render in seconds
    monkeypatch.setenv(zoo.ENV_DIR, str(tmp_path / "zoo"))
    return tmp_path


def test_demo_shows_every_zoo_model_first(env: Path) -> None:
    base = env / "zoo"
    make_entry(base, "stylegan2-fake32")
    make_entry(base, "pix2pixhd-fake32", "pix2pixhd-tiny32", data="openmoji-seg-32-n64", metrics={"fid_pairs": 99.0})
    make_entry(base, "spn-fake32", "spn-tiny-32", data="openmoji-32-n64", metrics={"bpd": 5.5})
    make_entry(base, "cyclegan-fake32", "cyclegan-tiny32", data="openmoji-faces2animals-32-n64",
               metrics={})
    broken = make_entry(base, "cips-broken32", "cips-tiny32") / "model.safetensors"
    broken.write_bytes(broken.read_bytes()[:-1] + b"\0")  # damaged: reported and passed over, the others still show
    res = CliRunner().invoke(cli, ["demo", "--no-train", "--outdir", str(env / "runs"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    out = env / "runs" / "zoo-demo"
    grid = np.asarray(Image.open(out / "stylegan2-fake32-samples.png"))
    assert grid.shape == (8 * 32, 8 * 32, 3)
    # the first 8 validation pairs, two (label | output | target) triples a row
    assert np.asarray(Image.open(out / "pix2pixhd-fake32-translations.png")).shape == (4 * 32, 6 * 32, 3)
    assert np.asarray(Image.open(out / "cyclegan-fake32-translations.png")).shape[1] == 4 * 32  # two A | G(A) pairs
    record = json.loads((out / "spn-fake32-bpd.json").read_text())
    bpd = record["results"]["bpd64"]
    assert 0 < bpd < 16 and record["protocol"]["num_images"] <= 64
    shown = [res.output.index(f"{n} (") for n in ("stylegan2-fake32", "pix2pixhd-fake32", "cyclegan-fake32",
                                                   "spn-fake32")]
    assert shown == sorted(shown)  # samples first, bits/dim last
    assert "cips-broken32: skipped" in res.output and "damaged" in res.output
    assert f"{bpd:.3f} bits/dim" in res.output and str(out / "stylegan2-fake32-samples.png") in res.output
    assert "[1/4]" not in res.output  # --no-train stops after the zoo


def test_demo_with_an_empty_zoo_says_so_and_trains(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    verbs = []

    def fake_verb(module: str, args: list[str]) -> None:  # stands in for the training run (minutes)
        verbs.append(module)
        raise SystemExit(7)

    monkeypatch.setattr(demo, "_run_verb", fake_verb)
    res = CliRunner().invoke(cli, ["demo", "--outdir", str(env / "runs"), "--kimg", "1"])
    assert "the model zoo is empty" in res.output
    assert res.exit_code == 7 and verbs == ["leangen.cli.train"]
