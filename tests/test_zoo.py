"""The model zoo (``leangen.zoo``): the shipped entries load, match their checksums and give finite, deterministic
outputs within the 40 MB budget; a fake zoo in tmp_path covers loading, unknown names, damaged files and listing."""
from __future__ import annotations

import fnmatch
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

import leangen
from leangen import zoo
from leangen.utils.registry import UnknownName

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "src" / "leangen" / "zoo" / "weights"
BUDGET_BYTES = 40 * 1024 * 1024  # issue 23: the zoo stays within 40 MB in all


def make_entry(base: Path, name: str, preset: str = "stylegan2-tiny32", role: str | None = None,
               **card_fields: Any) -> Path:
    """A zoo entry as benchmarks/zoo.py writes it, with a randomly initialized model of ``preset``."""
    from leangen.presets import get_preset

    p = get_preset(preset)
    torch.manual_seed(0)
    model = p.build(role or p.main_component)
    folder = base / name
    model.save_pretrained(folder)
    # family: the preset's name, as benchmarks/zoo.py records it (readers take the family from the preset)
    card = dict(name=name, preset=preset, family=preset, task=p.task, data="openmoji-32", group=f"{p.task}-32",
                metrics={"fid2k": 123.4, "kid2k": 0.05}, metric_records=[],
                training=dict(kimg=1.0, steps=10, seconds=90.0, device="cpu", device_name="test CPU", threads=1,
                              torch=torch.__version__, date="2026-12-04T00:00:00", batch=8, seed=0),
                command=f"python benchmarks/zoo.py --only {name}", train_command="leangen train ...", teacher=None,
                sha256=zoo.file_sha256(folder / "model.safetensors"), params=model.num_params())
    card.update(card_fields)
    (folder / "card.json").write_text(json.dumps(card, indent=2))
    return folder


def fixed_output(model: Any) -> torch.Tensor:
    """The model's output for a fixed input: seed 0's image, the log-probability of seeded images, the translation of
    seeded label maps (or images)."""
    kind = model.kind
    if kind == "generator":
        return model.generate([0], output_type="pt")
    if kind == "likelihood":
        with torch.no_grad():
            return model.log_prob(*model.example_inputs(2))
    if kind == "translator":
        return model.translate(model.example_inputs(2)[0], output_type="pt")
    raise AssertionError(f"a zoo entry of kind {kind!r}")


@pytest.fixture
def fake_zoo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    base = tmp_path / "zoo"
    make_entry(base, "stylegan2-fake32")
    monkeypatch.setenv(zoo.ENV_DIR, str(base))
    return base


def test_fake_entry_loads_through_leangen_load(fake_zoo: Path) -> None:
    assert zoo.available() == ["stylegan2-fake32"]
    assert zoo.path("stylegan2-fake32") == fake_zoo / "stylegan2-fake32"
    assert zoo.card("zoo:stylegan2-fake32")["preset"] == "stylegan2-tiny32"
    G = leangen.load("zoo:stylegan2-fake32")
    ref = leangen.load(fake_zoo / "stylegan2-fake32")  # the same folder loaded as a plain saved model
    assert not G.training
    assert torch.equal(fixed_output(G), fixed_output(ref))
    assert zoo.main_metric(zoo.card("stylegan2-fake32")) == ("fid2k", 123.4)


def test_incomplete_folder_is_not_listed(fake_zoo: Path) -> None:
    partial = make_entry(fake_zoo, "cips-partial32", "cips-tiny32")
    (partial / "card.json").unlink()  # the trainer writes the card last: a folder without one is still being written
    make_entry(fake_zoo, "spade-fake32.tmp", "spade-tiny32")  # written in full, not yet renamed into place
    assert zoo.available() == ["stylegan2-fake32"]


def test_unknown_name_lists_the_available_ones(fake_zoo: Path) -> None:
    with pytest.raises(UnknownName, match=r"no zoo model 'stylegan2-nope'; available: stylegan2-fake32"):
        leangen.load("zoo:stylegan2-nope")
    empty = fake_zoo.parent / "empty"
    with pytest.raises(KeyError, match="holds no entries"):
        zoo.load("anything", directory=empty)


def test_tampered_weights_are_refused(fake_zoo: Path) -> None:
    weights = fake_zoo / "stylegan2-fake32" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # one flipped bit in the last tensor: still loads as safetensors, so only the checksum sees it
    weights.write_bytes(bytes(data))
    with pytest.raises(zoo.ZooIntegrityError, match="damaged or was replaced"):
        leangen.load("zoo:stylegan2-fake32")
    card_path = fake_zoo / "stylegan2-fake32" / "card.json"
    card = json.loads(card_path.read_text())
    del card["sha256"]
    card_path.write_text(json.dumps(card))
    with pytest.raises(zoo.ZooIntegrityError, match="records no sha256"):
        zoo.load("stylegan2-fake32")
    card_path.write_text("{not json")
    with pytest.raises(zoo.ZooIntegrityError, match="not a readable zoo card"):
        zoo.load("stylegan2-fake32")


def test_models_zoo_lists_the_entries(fake_zoo: Path) -> None:
    from leangen.cli.main import cli

    res = CliRunner().invoke(cli, ["models", "--zoo"])
    assert res.exit_code == 0, res.output
    row = next(line for line in res.output.splitlines() if "stylegan2-fake32" in line)
    cells = [c.strip() for c in row.split("│")]
    assert cells == ["stylegan2-fake32", "stylegan2", "unconditional", "openmoji-32", "417,171", "fid2k 123.4",
                     "1.5 min", "cpu test CPU"], row
    (make_entry(fake_zoo, "cips-broken32", "cips-tiny32") / "card.json").write_text("{")  # named, left out
    res = CliRunner().invoke(cli, ["models", "--zoo", "--json"])
    assert [c["name"] for c in json.loads(res.stdout)] == ["stylegan2-fake32"]
    assert "cips-broken32" in res.stderr and "not a readable zoo card" in res.stderr
    empty = fake_zoo.parent / "empty"
    res = CliRunner().invoke(cli, ["models", "--zoo"], env={zoo.ENV_DIR: str(empty)})
    assert res.exit_code == 0 and "no trained models" in res.output


# --- what ships ----------------------------------------------------------------------------------------------


def test_shipped_zoo_fits_the_budget_and_the_package_data() -> None:
    files = [p for p in SHIPPED.rglob("*") if p.is_file()] if SHIPPED.is_dir() else []
    total = sum(p.stat().st_size for p in files)
    assert total <= BUDGET_BYTES, f"the zoo is {total / 2**20:.1f} MB, over its 40 MB budget"
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["leangen.zoo"]
    for name in ("config.json", "model.safetensors", "card.json", "samples.png"):  # each file of an entry ships
        assert any(fnmatch.fnmatch(f"weights/x/{name}", g) for g in globs), name


@pytest.mark.parametrize("name", zoo.available(SHIPPED))
def test_shipped_entry_loads_and_is_deterministic(name: str) -> None:
    card = zoo.card(name, SHIPPED)
    assert card["name"] == name and card["command"] and card["training"]["seconds"] > 0
    assert card["task"] in ("unconditional", "likelihood", "paired", "unpaired")
    assert card["metrics"] or card["task"] == "unpaired"  # nothing scores an unpaired translation without a target
    assert (SHIPPED / name / zoo.SAMPLES_NAME).is_file()
    model = zoo.load(name, directory=SHIPPED)  # checks the sha256 first
    assert model.num_params() == card["params"]
    first, second = fixed_output(model), fixed_output(model)
    assert torch.isfinite(first).all()
    assert torch.equal(first, second)
