"""``leangen serve`` without a browser: the tab handlers, upload checks, model pairing and the CLI verb (parsing,
refusals, and one real ``leangen serve`` process whose page answers over HTTP).

Tiny presets with random weights (``leangen.load(preset)`` warns): what is checked is shapes, messages and wiring,
not image quality. The page itself is tested in a real browser in ``test_serve_browser.py``.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from leangen.serve import handlers
from leangen.serve.labelmaps import PALETTE, drawing_to_labels, example_labels, read_upload, resize_labels
from leangen.serve.models import DemoError, DemoModel, ModelSet, default_sources, find_pairs

SOURCES = {"PixelFolder": "pixelfolder-tiny32", "StyleGAN2": "stylegan2-tiny32",
           "StyleGAN2-student": "stylegan2-tiny32-student", "SPADE": "spade-tiny32", "ASAP-Net": "asapnet-tiny32"}


@pytest.fixture(scope="module")
def ms() -> ModelSet:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "randomly initialized" for every preset
        return ModelSet.load(SOURCES, strict=True)


def test_models_sorted_by_role_and_paired(ms: ModelSet) -> None:
    assert ms.names("generator") == ["PixelFolder", "StyleGAN2", "StyleGAN2-student"]
    assert ms.label_translators() == ["ASAP-Net", "SPADE"]  # the efficient one first, whatever the given order
    assert ms.pairs == [("StyleGAN2", "StyleGAN2-student")]
    assert all(m.random_weights for m in ms.models.values())


def test_pairs_from_a_zoo_card(ms: ModelSet) -> None:
    """A card's ``teacher`` (a zoo name) pairs models whose names say nothing."""
    a, s = ms.models["ASAP-Net"], ms.models["SPADE"]
    models = {"big": DemoModel("big", "zoo:asap-teacher", a.model),
              "small": DemoModel("small", "zoo:asap-small", s.model, card={"teacher": "asap-teacher"}),
              "gen": DemoModel("gen", "zoo:gen", ms.models["StyleGAN2"].model, card={"teacher": "asap-teacher"})}
    assert find_pairs(models) == [("big", "small")]  # "gen" is another kind than its named teacher: not a pair


def test_unloadable_source_is_a_problem_or_an_error() -> None:
    with pytest.raises(DemoError, match="no-such-model"):
        ModelSet.load({"x": "no-such-model"}, strict=True)
    loose = ModelSet.load({"x": "no-such-model"})
    assert not loose.models and "cannot load 'no-such-model'" in loose.problems[0]


def test_default_sources_without_zoo_entries(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LEANGEN_ZOO_DIR", str(tmp_path))  # an empty zoo
    sources, note = default_sources()
    assert "ASAP-Net" in sources and note and "random weights" in note


def _zoo_entry(base, name: str, preset: str, **card: object) -> None:
    import json

    from leangen import zoo
    from leangen.presets import get_preset

    p = get_preset(preset)
    model = p.build(p.main_component)
    model.save_pretrained(base / name)
    sha = zoo.file_sha256(base / name / "model.safetensors")
    (base / name / "card.json").write_text(json.dumps(dict(name=name, preset=preset, task=p.task, sha256=sha, **card)))


def test_default_sources_are_the_zoo(tmp_path, monkeypatch) -> None:
    """Without --models the demo serves every zoo entry through ``zoo:<name>``, pairs a student with the teacher its
    card names, and lists a damaged entry instead of failing."""
    pytest.importorskip("leangen.zoo")
    _zoo_entry(tmp_path, "seg-big", "asapnet-tiny32")
    _zoo_entry(tmp_path, "seg-small", "spade-tiny32", teacher="seg-big")
    _zoo_entry(tmp_path, "broken", "stylegan2-tiny32")
    (tmp_path / "broken" / "model.safetensors").write_bytes(b"0" * 64)
    monkeypatch.setenv("LEANGEN_ZOO_DIR", str(tmp_path))
    ms = ModelSet.load(None)
    assert list(ms.models) == ["seg-big", "seg-small"] and ms.note is None
    assert ms.models["seg-small"].source == "zoo:seg-small" and not ms.models["seg-small"].random_weights
    assert ms.pairs == [("seg-big", "seg-small")]
    assert len(ms.problems) == 1 and ms.problems[0].startswith("broken: cannot load 'zoo:broken'")


def test_generate_grid_and_pixelfolder_stage_strip(ms: ModelSet) -> None:
    grid, strip, status = handlers.generate(ms, "PixelFolder", "0-3", 0.7)
    n_stages = ms.models["PixelFolder"].model.num_stages
    assert grid.shape == (256, 256, 3) and grid.dtype == np.uint8  # 2x2 tiles of 32 px, enlarged 4x
    assert strip is not None and strip.shape == (4 * 128, n_stages * 128, 3)  # a row per seed, a column per stage
    # the last stage is the image itself: the strip's last column equals the grid's first tile
    assert np.array_equal(strip[:128, -128:], grid[:128, :128])
    assert "4 image(s) of 32x32" in status and "random weights" in status
    _, strip2, _ = handlers.generate(ms, "StyleGAN2", "5", 1.0)
    assert strip2 is None


@pytest.mark.parametrize("text, message", [("abc", "bad list"), ("0-100", "at most 64"), ("", "bad list")])
def test_bad_seeds(ms: ModelSet, text: str, message: str) -> None:
    with pytest.raises(DemoError, match=message):
        handlers.generate(ms, "StyleGAN2", text)


def _png(path, array: np.ndarray, mode: str | None = None) -> str:
    Image.fromarray(array, mode=mode).save(path) if mode else Image.fromarray(array).save(path)
    return str(path)


def test_read_upload(tmp_path) -> None:
    ids = example_labels(32).astype(np.uint8)
    labels, how = read_upload(_png(tmp_path / "grey.png", ids))
    assert np.array_equal(labels, ids) and "class ids" in how
    colours = np.array(PALETTE, dtype=np.uint8)[ids]
    labels, how = read_upload(_png(tmp_path / "colour.png", colours))
    assert np.array_equal(labels, ids) and "nearest" in how
    Image.fromarray(ids).save(tmp_path / "map.jpg")
    (tmp_path / "map.png.txt").write_text("not an image")
    for bad in ("map.jpg", "map.png.txt"):
        with pytest.raises(DemoError, match="is not a PNG file"):
            read_upload(tmp_path / bad)
    (tmp_path / "cut.png").write_bytes((tmp_path / "grey.png").read_bytes()[:40])  # a PNG signature, then junk
    with pytest.raises(DemoError, match="cut.png"):
        read_upload(tmp_path / "cut.png")


def test_drawing_to_labels() -> None:
    canvas = np.zeros((8, 8, 4), dtype=np.uint8)       # transparent: background
    canvas[2:4, 2:4] = (*PALETTE[3], 255)              # red
    canvas[5, 5] = (PALETTE[6][0] + 6, PALETTE[6][1] - 5, PALETTE[6][2], 255)  # blue, slightly off (anti-aliasing)
    labels = drawing_to_labels(canvas)
    assert labels[0, 0] == 0 and labels[3, 3] == 3 and labels[5, 5] == 6
    assert np.array_equal(resize_labels(labels, 16, 16)[::2, ::2], labels)


def test_translate_with_latency(ms: ModelSet) -> None:
    gallery, rows, status = handlers.translate(ms, example_labels(32), repeats=2)
    captions = [c for _, c in gallery]
    assert captions[0].startswith("label map 32x32")
    assert captions[1].startswith("ASAP-Net (asapnet) · ") and captions[1].endswith(" ms")
    assert [r[0] for r in rows] == ["ASAP-Net", "SPADE"] and all(r[3] > 0 for r in rows)
    assert all(img.shape == (128, 128, 3) for img, _ in gallery)


def test_translate_refuses_bad_label_maps(ms: ModelSet) -> None:
    k = ms.models["ASAP-Net"].model.num_classes
    bad = example_labels(32)
    bad[0, 0] = k
    with pytest.raises(DemoError, match=rf"ASAP-Net: label ids must be in 0..{k - 1}; this map has 0..{k}"):
        handlers.translate(ms, bad)
    with pytest.raises(DemoError, match="ASAP-Net: a 33x33 input"):
        handlers.translate(ms, np.zeros((33, 33), dtype=np.int64))
    # fitted to each model's size (drawings), any size works
    gallery, _, _ = handlers.translate(ms, np.zeros((33, 33), dtype=np.int64), ["SPADE"], fit_size=True)
    assert len(gallery) == 2


def test_translate_leaves_out_only_the_model_that_refuses(ms: ModelSet) -> None:
    spade = ms.models["SPADE"].model
    old = spade.num_classes
    spade.num_classes = 3  # SPADE knows fewer classes than the map uses; ASAP-Net still runs
    try:
        gallery, rows, status = handlers.translate(ms, example_labels(32), repeats=1)
    finally:
        spade.num_classes = old
    assert [r[0] for r in rows] == ["ASAP-Net"] and "left out: SPADE: label ids must be in 0..2" in status


def test_profile_table_and_figure(ms: ModelSet) -> None:
    rows, fig = handlers.profile(ms, ["ASAP-Net", "StyleGAN2"], repeats=1)
    assert [r[0] for r in rows] == ["StyleGAN2", "ASAP-Net"]  # the demo's order, not the order of the choice
    assert rows[0][3] == round(417_171 / 1e6, 3) and rows[1][3] == round(166_227 / 1e6, 3)  # params (M)
    assert all(r[4] > 0 and r[5] > 0 for r in rows)
    assert len(fig.axes) == 3 and [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["StyleGAN2", "ASAP-Net"]


def test_compress_before_after(ms: ModelSet) -> None:
    teacher, student, rows, status = handlers.compress(ms, "StyleGAN2", "StyleGAN2-student", "0-3", repeats=1)
    assert teacher.shape == student.shape == (256, 256, 3)
    assert [r[:3] for r in rows] == [["teacher", "StyleGAN2", 417_171], ["student", "StyleGAN2-student", 177_107]]
    assert "2.36x fewer parameters" in status and "interleaved" in status
    with pytest.raises(DemoError, match="compare a teacher with its own student"):
        handlers.compress(ms, "StyleGAN2", "ASAP-Net")
    with pytest.raises(DemoError, match="two different models"):
        handlers.compress(ms, "SPADE", "SPADE")


def test_guard_turns_errors_into_one_line(capsys) -> None:
    gr = pytest.importorskip("gradio", reason="the serve extra (gradio) is not installed")
    from leangen.serve.app import _guard

    def bad_input() -> None:
        raise DemoError("seeds: bad list 'abc'")

    def bug() -> None:
        raise RuntimeError("shapes do not match\nlong details")

    with pytest.raises(gr.Error) as e:
        _guard(bad_input)()
    assert e.value.message == "seeds: bad list 'abc'"
    with pytest.raises(gr.Error) as e:
        _guard(bug)()
    assert e.value.message == "RuntimeError: shapes do not match"
    assert "Traceback" in capsys.readouterr().err  # in the server log, not on the page


def test_build_app_has_the_four_tabs(ms: ModelSet) -> None:
    gr = pytest.importorskip("gradio", reason="the serve extra (gradio) is not installed")
    from leangen.serve import build_app

    app = build_app(ms)
    tabs = [b.label for b in app.blocks.values() if isinstance(b, gr.Tab)]
    assert tabs == ["Generate", "Translate", "Compare", "Compress"]


def test_cli_serve_arguments() -> None:
    from leangen.cli.main import cli
    from leangen.cli.serve import command, parse_models

    ctx = command.make_context("serve", ["--models", "a=x", "b=y", "--port", "8000", "--models", "c"])
    assert parse_models(ctx.params["model_specs"]) == {"a": "x", "b": "y", "c": "c"}
    assert ctx.params["host"] == "127.0.0.1" and ctx.params["port"] == 8000
    runner = CliRunner()
    res = runner.invoke(cli, ["serve", "--models", "a=x", "a=y"])
    assert res.exit_code == 2 and "given twice" in res.output
    res = runner.invoke(cli, ["serve", "--device", "cpu", "--models", "x=no-such-model"])
    assert res.exit_code == 1 and "cannot load 'no-such-model'" in res.output and "Traceback" not in res.output
    assert "serve" in runner.invoke(cli, ["--help"]).output


def test_cli_serve_serves_the_page(tmp_path) -> None:
    """``leangen serve`` itself (blocking launch, --models parsing, 127.0.0.1): the page answers, then Ctrl-C-like
    termination stops it."""
    pytest.importorskip("gradio", reason="the serve extra (gradio) is not installed")
    with socket.socket() as s:  # a free port
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "leangen", "serve", "--port", str(port), "--device", "cpu",
                                 "--models", "ASAP-Net=asapnet-tiny32", "SPADE=spade-tiny32"],
                                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline, html = time.monotonic() + 90, ""
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    html = r.read().decode()
                break
            except OSError:
                time.sleep(0.5)
        assert "leangen demo" in html, log.read_text()[-2000:]
        assert f"serving 2 model(s) on http://127.0.0.1:{port}" in log.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
