"""CycleGAN through the shared loop: the unpaired task and data, the ``cyclegan`` objective and its image pools,
exact resume, ``leangen.load`` and the CLI on an image -> image translator."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import load_file

import leangen
from leangen import runs
from leangen.cli.main import cli
from leangen.data.batch import Batch, collate
from leangen.data.splits import split_indices
from leangen.data.unpaired import UnpairedDataset
from leangen.models.base import Translator
from leangen.registry import get_preset
from leangen.tasks import get_task, open_source, task_for_model
from leangen.train import TrainOptions, TrainResult, train
from leangen.train.cyclegan import CycleGANObjective, ImagePool
from leangen.train.options import resolve_options
from leangen.train.runtime import Runtime

RES = 32
DATA = "openmoji-faces2animals-32-n16"  # 16 faces, 16 animals: ~14 + 14 for training
ROLES = ["G_A", "G_B", "D_A", "D_B"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("leangen-cache")


@pytest.fixture(autouse=True)
def _private_cache(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEANGEN_CACHE", str(cache))


def opts(outdir: Path, **kw) -> TrainOptions:
    # pool_size 3 fills at the first step, so the pools' random replacements straddle the resume point
    base = dict(preset="cyclegan-tiny32", data=DATA, outdir=str(outdir), batch=2, tick=0.004, snap=1, device="cpu",
                progress=False, grid=4, metrics=[], mirror=True, hparams={"pool_size": 3})
    base.update(kw)
    return TrainOptions(**base)


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory, cache: Path) -> TrainResult:
    """A 4-step run of the tiny preset on the built-in faces -> animals set (mirrored, pools of 3)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("LEANGEN_CACHE", str(cache))
    try:
        return train(opts(tmp_path_factory.mktemp("straight"), steps=4))
    finally:
        mp.undo()


def test_trains_and_resumes_exactly(straight: TrainResult, tmp_path: Path) -> None:
    first = train(opts(tmp_path / "b", steps=2))
    resumed = train(TrainOptions(resume=str(first.run_dir), steps=4, device="cpu", progress=False))
    assert resumed.step == 4
    for role in ROLES:
        wa, wb = (load_file(str(s / role / "model.safetensors")) for s in (straight.snapshot, resumed.snapshot))
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), role
    pools = [runs.load_state(s)["objective_state"] for s in (straight.snapshot, resumed.snapshot)]
    for name in ("pool_A", "pool_B"):
        assert pools[0][name]["images"].shape == (3, 3, RES, RES)
        assert torch.equal(pools[0][name]["images"], pools[1][name]["images"])
        assert torch.equal(pools[0][name]["generator"], pools[1][name]["generator"])

    index = json.loads((straight.snapshot / "index.json").read_text())
    assert index["task"] == "unpaired" and index["objective"] == "cyclegan" and index["entry"] == "G_A"
    assert {index["modules"][r]["role"] for r in ROLES} == {"trained"}
    rows = [json.loads(x) for x in (straight.run_dir / "stats.jsonl").read_text().splitlines()]
    assert {"loss_G_A", "cycle_A", "cycle_B", "idt_A", "idt_B", "loss_D_A", "loss_D_B"} <= set(rows[-1])
    # preview grid: validation items as A | G_A(A) | B | G_B(B), one quadruple (2 x 2 tiles) or four (4 x 4)
    td = get_task("unpaired").open(DATA, RES)
    side = 4 if len(td.val) >= 4 else 2
    assert Image.open(straight.run_dir / "fakes000000.png").size == (side * RES, side * RES)


def test_loads_as_an_image_translator_and_translates_from_the_cli(straight: TrainResult, tmp_path: Path) -> None:
    G = leangen.load(straight.run_dir)
    assert isinstance(G, Translator) and G.input_kind == "image" and G.in_channels == 3
    assert type(task_for_model(G)).__name__ == "UnpairedTask"
    G_B = leangen.load(straight.snapshot, role="G_B")
    assert not torch.equal(next(G.parameters()), next(G_B.parameters()))
    td = get_task("unpaired").open(DATA, RES)
    faces = collate([td.train[i] for i in range(2)]).image
    out = G.translate(faces)  # uint8 images in, float [-1, 1] out
    assert out.shape == (2, 3, RES, RES) and out.abs().max() <= 1
    assert torch.equal(out, G.translate(faces.float() / 127.5 - 1))
    with pytest.raises(ValueError, match=r"takes images \[B, 3, H, W\]"):
        G.translate(torch.zeros(1, RES, RES, dtype=torch.long))

    # leangen translate reads images for an image-input model; generate points to translate
    src = tmp_path / "faces"
    src.mkdir()
    for i, img in enumerate(faces):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(src / f"face{i}.png")
    result = CliRunner().invoke(cli, ["translate", "--network", str(straight.run_dir), "--input", str(src),
                                      "--outdir", str(tmp_path / "out"), "--grid"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["face0.png", "face1.png", "grid.png"]
    written = np.asarray(Image.open(tmp_path / "out" / "face0.png"))
    expected = ((out[0] * 127.5 + 128).clamp(0, 255).to(torch.uint8)).permute(1, 2, 0).numpy()
    assert np.array_equal(written, expected)
    Image.new("RGB", (30, 30)).save(src / "odd.png")
    result = CliRunner().invoke(cli, ["translate", "--network", str(straight.run_dir), "--input", str(src),
                                      "--outdir", str(tmp_path / "o2")])
    assert result.exit_code == 1 and "odd.png: a 30x30 input" in result.output and "multiples of 4" in result.output
    result = CliRunner().invoke(cli, ["generate", "--network", str(straight.run_dir), "--outdir", str(tmp_path)])
    assert result.exit_code == 1 and "leangen translate" in result.output


def _objective(**hparams: object) -> CycleGANObjective:
    o = resolve_options(TrainOptions(preset="cyclegan-tiny32", data=DATA, batch=4, hparams=dict(hparams)))
    torch.manual_seed(0)
    obj = CycleGANObjective()
    obj.build(get_preset("cyclegan-tiny32"), Runtime(torch.device("cpu")), o)
    return obj


def test_cycle_and_identity_losses_fall_on_a_fixed_batch() -> None:
    obj = _objective()
    gen = torch.Generator().manual_seed(1)
    # two smooth random "domains": blurred noise images in [-1, 1]
    a = torch.nn.functional.avg_pool2d(torch.rand(2, 3, RES, RES, generator=gen) * 2 - 1, 5, 1, 2)
    b = -a.flip(-1)
    batch = Batch(a, image_b=b)

    def reconstruction() -> float:
        with torch.no_grad():
            _, parts, _, _ = obj.generator_losses(a, b)
        return float(parts["cycle_A"] + parts["cycle_B"] + parts["idt_A"] + parts["idt_B"])

    before = reconstruction()
    for step in range(6):
        stats = obj.train_step(batch, step)
    assert all(torch.isfinite(v) for v in stats.values())
    assert reconstruction() < 0.75 * before  # about 0.53x in 6 steps


def test_lr_decays_linearly_to_zero() -> None:
    obj = _objective(lr_decay_start_kimg=0.008, lr_decay_kimg=0.004)  # batch 4: decay from step 2 to step 3
    assert [obj.lr_at(s) for s in (0, 2, 3, 4, 9)] == pytest.approx([1e-3, 1e-3, 0.0, 0.0, 0.0])
    obj.train_step(Batch(torch.zeros(4, 3, RES, RES), image_b=torch.zeros(4, 3, RES, RES)), 2)
    assert obj.opt_G.param_groups[0]["lr"] == obj.opt_D.param_groups[0]["lr"] == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="both lr_decay_start_kimg and lr_decay_kimg"):
        _objective(lr_decay_start_kimg=1.0)


def test_image_pool_fills_then_swaps_half_the_time() -> None:
    pool = ImagePool(5, seed=3)
    marks = lambda vals: torch.tensor(vals, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 3, 2, 2)  # noqa: E731
    first = marks([0, 1, 2, 3, 4])
    assert torch.equal(pool.query(first), first) and len(pool) == 5  # filling: the inputs come back
    stored_before = {float(v) for v in pool.images[:, 0, 0, 0]}  # type: ignore[index]
    seen, from_pool = set(stored_before), 0
    saved = pool.state_dict()
    outs = []
    for k in range(5, 805):
        new = marks([k])
        out = float(pool.query(new)[0, 0, 0, 0])
        outs.append(out)
        if out != k:
            assert out in seen  # an image stored earlier, never one that was not given before
            from_pool += 1
        seen.add(float(k))
        assert len(pool) == 5
    assert 0.4 < from_pool / 800 < 0.6  # p = 0.5
    # the state (images + generator) replays the same decisions
    replay = ImagePool(5, seed=99)
    replay.load_state_dict(saved)
    assert [float(replay.query(marks([k]))[0, 0, 0, 0]) for k in range(5, 805)] == outs
    assert torch.equal(ImagePool(0).query(first), first)  # size 0: no pool


def _folder(root: Path, names: dict[str, list[str]]) -> Path:
    for sub, files in names.items():
        (root / sub).mkdir(parents=True)
        for i, name in enumerate(files):
            Image.new("RGB", (12, 10), (i * 20 % 256, 100 if sub == "trainA" else 200, 0)).save(root / sub / name)
    return root


def test_unpaired_data_splits_by_name_in_each_domain(tmp_path: Path) -> None:
    names_a = [f"a{i:03d}.png" for i in range(40)]
    names_b = [f"b{i:03d}.jpg" for i in range(25)]
    root = _folder(tmp_path / "h2z", {"trainA": names_a, "trainB": names_b, "testA": ["x.png"]})
    td = get_task("unpaired").open(str(root), 8)
    assert td.name == "h2z" and td.train is not td.val
    for split, dom, names in ((td.train, "domain_a", names_a), (td.train, "domain_b", names_b),
                              (td.val, "domain_a", names_a), (td.val, "domain_b", names_b)):
        tr, va = split_indices(len(names), names)
        want = tr if split is td.train else va
        assert getattr(split, dom).names == [names[i] for i in want]
    assert not set(td.train.domain_a.names) & set(td.val.domain_a.names)
    assert get_task("unpaired").split(td, "all").domain_a.names == names_a  # testA/ is not read
    item = td.train[0]
    assert item["image"].shape == item["image_b"].shape == (3, 8, 8) and item["image"][1, 0, 0] == 100
    assert item["image_b"][1, 0, 0] == 200
    # every (A, B) combination is one item, so the stream draws A and B independently
    ds = td.train
    a, b = ds.pair_indices(torch.arange(len(ds)))
    assert len(ds) == len(ds.domain_a) * len(ds.domain_b) == len(set(zip(a.tolist(), b.tolist())))
    batch = collate(ds.get_batch([0, 5]))
    assert batch.image_b is not None and torch.equal(batch.image_b[1], ds[5]["image_b"])
    flipped = batch.flip_where(torch.tensor([True, False]))
    assert torch.equal(flipped.image_b[0], batch.image_b[0].flip(-1))  # type: ignore[index]

    # too many combinations: fewer partners per A image, still every B image in every epoch
    monkey = pytest.MonkeyPatch()
    monkey.setattr("leangen.data.unpaired.MAX_COMBINATIONS", 100)
    small = UnpairedDataset(td.train.domain_a, td.train.domain_b)
    monkey.undo()
    assert len(small) <= 100 + len(small.domain_a)
    assert set(small.pair_indices(torch.arange(len(small)))[1].tolist()) == set(range(len(small.domain_b)))

    # the other tasks refuse two domains, the unpaired task refuses one
    with pytest.raises(ValueError, match="two unpaired image domains"):
        get_task("unconditional").open(str(root), 8)
    with pytest.raises(ValueError, match="two unpaired image domains; the paired task"):
        get_task("paired").open(str(root), 8)
    with pytest.raises(ValueError, match="the unpaired task needs two image domains"):
        get_task("unpaired").open(str(root / "trainA"), 8)


def test_builtin_faces2animals(cache: Path) -> None:
    ds = open_source(DATA, RES)
    assert isinstance(ds, UnpairedDataset) and ds.name == DATA
    assert len(ds.domain_a) == len(ds.domain_b) == 16
    assert all(n.startswith("1F") and n.endswith(".png") for n in ds.domain_a.names + ds.domain_b.names)
    faces = {int(n[:-4], 16) for n in ds.domain_a.names}
    assert all(0x1F600 <= cp <= 0x1F64F or 0x1F910 <= cp <= 0x1F9FF or 0x1FAE0 <= cp <= 0x1FAEF for cp in faces)
    assert "CC BY-SA" in ds.metadata["license"]
    # faces are mostly yellow, animals are not: the two domains differ in colour
    yellow = [float(((d.get_batch(torch.arange(16))[:, 0] > 200) & (d.get_batch(torch.arange(16))[:, 2] < 120))
                    .float().mean()) for d in (ds.domain_a, ds.domain_b)]
    assert yellow[0] > 3 * yellow[1]
