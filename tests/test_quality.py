"""benchmarks/quality.py (issue 23): the papers' orderings judged on zoo cards (held, not held with the margin, not
measured when an entry is missing), the group tables and the links to the sample grids, from fake cards."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_script():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("quality", ROOT / "benchmarks" / "quality.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["quality"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def fake_card(base: Path, name: str, preset: str, group: str, metrics: dict[str, float],
              teacher: str | None = None, samples: bool = True) -> dict[str, Any]:
    folder = base / name
    folder.mkdir(parents=True)
    if samples:
        (folder / "samples.png").write_bytes(b"\x89PNG")
    card = dict(name=name, preset=preset, family=preset, task="unconditional", data="openmoji-32", group=group,
                metrics=metrics, teacher=teacher, params=1000, command=f"python benchmarks/zoo.py --only {name}",
                training=dict(kimg=None if teacher else 20.0, seconds=1800.0, device="cpu", device_name="test CPU"))
    (folder / "card.json").write_text(json.dumps(card))
    return dict(card, path=str(folder))


@pytest.fixture
def cards(tmp_path: Path) -> list[dict[str, Any]]:
    g = "unconditional-32"
    return [
        fake_card(tmp_path, "pixelfolder-x", "pixelfolder-tiny32", g, {"fid1k": 90.0, "kid1k": 0.08}),
        fake_card(tmp_path, "stylegan2-x", "stylegan2-tiny32", g, {"fid1k": 100.0, "kid1k": 0.09}),
        fake_card(tmp_path, "cips-x", "cips-tiny32", g, {"fid1k": 80.0, "kid1k": 0.07}),
        fake_card(tmp_path, "asapnet-x", "asapnet-tiny32", "paired-32", {"fid_pairs": 105.0, "psnr": 12.0}),
        fake_card(tmp_path, "pix2pixhd-x", "pix2pixhd-tiny32", "paired-32", {"fid_pairs": 100.0, "psnr": 12.5},
                  samples=False),
        fake_card(tmp_path, "asapnet-x-student", "asapnet-tiny32", "compressed-32", {"psnr": 10.0},
                  teacher="asapnet-x"),
    ]


def test_claims_held_not_held_and_not_measured(cards: list[dict[str, Any]], tmp_path: Path) -> None:
    q = load_script()
    claims = {c["claim"]: c for c in q.build(cards, tmp_path)["claims"]}
    held = claims["PixelFolder ≤ StyleGAN2 (FID)"]
    assert held["status"] == "held" and held["metric"] == "fid1k" and held["worse"] == pytest.approx(-0.10)
    assert "10.0% better; kid1k 0.08 vs 0.09: 11.1% better" in held["margin"]  # KID beside FID
    not_held = claims["StyleGAN2 < CIPS (FID)"]  # CIPS came out better here: the paper's ordering is not held
    assert not_held["status"] == "not held" and not_held["worse"] == pytest.approx(0.25)
    assert "25.0% worse" in not_held["margin"]
    within = claims["ASAP-Net within 10% of pix2pixHD (fid_pairs)"]
    assert within["status"] == "held" and "5.0% worse (allowed: 10% worse)" in within["margin"]
    # PSNR: higher is better, so 10 dB against the teacher's 12 dB is 16.7% worse, outside the allowance
    student = claims["student within 10% of its teacher (fid_pairs, else PSNR)"]
    assert student["status"] == "not held" and student["metric"] == "psnr"
    assert student["worse"] == pytest.approx(2 / 12)
    assert claims["StyleNAT ≤ StyleGAN2 (FID)"]["status"] == "not measured"
    assert "no stylenat entry" in claims["StyleNAT ≤ StyleGAN2 (FID)"]["margin"]
    assert "no spn entry and no ar-decoder entry" in claims["SPN ≤ full-image AR baseline (bits/dim)"]["margin"]


def test_markdown_tables_claims_and_links(cards: list[dict[str, Any]], tmp_path: Path) -> None:
    q = load_script()
    payload = q.build(cards, tmp_path)
    assert list(payload["groups"]) == ["compressed-32", "paired-32", "unconditional-32"]
    md = q.markdown(json.loads(json.dumps(payload)))  # what make_docs renders: the JSON as saved
    assert "| pixelfolder-x | 1,000 | 20 | 30.0 | cpu | 90 | 0.08 |" in md
    assert "| asapnet-x-student (student of asapnet-x) | 1,000 |  | 30.0 | cpu | 10 |" in md
    assert f"[png]({tmp_path.resolve() / 'pixelfolder-x' / 'samples.png'})" in md  # outside the repo: absolute
    assert "| pix2pixhd-x | 1,000 | 20 | 30.0 | cpu | 100 | 12.5 |  |" in md  # no sample grid: no link
    assert "| StyleGAN2 < CIPS (FID) | **not held** | stylegan2-x fid1k 100 vs cips-x 80: 25.0% worse; kid1k 0.09 vs 0.07: 28.6% worse |" in md
    assert "PixelFolder (He et al., ECCV 2022" in md and "small CPU runs at 32×32" in md


def test_make_docs_renders_the_quality_results(cards: list[dict[str, Any]], tmp_path: Path) -> None:
    q = load_script()
    spec = importlib.util.spec_from_file_location("make_docs", ROOT / "benchmarks" / "make_docs.py")
    make_docs = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(make_docs)  # type: ignore[union-attr]
    path = tmp_path / "quality-cpu.json"
    path.write_text(json.dumps(q.build(cards, tmp_path)))
    section = make_docs.section(path)
    assert section.startswith("## Model zoo quality and the papers' orderings (")
    assert "### unconditional-32" in section and "| StyleGAN2 < CIPS (FID) | **not held** |" in section
