"""Paired data on disk and built in: folders with matching names, the pix2pix A|B layout, colour-coded label maps
with a palette, clear errors before anything is written; openmoji-edges; palette-class segmentation metrics."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from leangen.cli.main import cli
from leangen.data.paired import colorize_labels
from leangen.data.paired_folders import load_pair_sources, write_pairs
from leangen.metrics.paired import confusion, segmentation_scores
from leangen.models.base import Translator
from leangen.tasks import get_task, open_source

PALETTE = [[255, 255, 255], [200, 30, 30], [20, 120, 220]]


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEANGEN_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def make_sources(root: Path, n: int = 12, h: int = 16, w: int = 32) -> tuple[Path, Path, Path, list[np.ndarray]]:
    """RGB colour-coded label maps + targets in two folders (1:2 aspect), an A|B folder of the same, a palette."""
    rng = np.random.default_rng(0)
    (root / "labels").mkdir(parents=True), (root / "images").mkdir(), (root / "ab").mkdir()
    pal = np.array(PALETTE, dtype=np.uint8)
    ids = []
    for i in range(n):
        lab = rng.integers(0, 3, (h, w))
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pal[lab]).save(root / "labels" / f"p{i:02d}.png")
        Image.fromarray(img).save(root / "images" / f"p{i:02d}.png")
        Image.fromarray(np.concatenate([pal[lab], img], 1)).save(root / "ab" / f"p{i:02d}.png")
        ids.append(lab)
    (root / "palette.json").write_text(json.dumps({"classes": ["sky", "wall", "window"], "palette": PALETTE}))
    return root / "labels", root / "images", root / "ab", ids


def test_folder_and_ab_pairs_give_the_same_dataset_and_train_split(tmp_path: Path) -> None:
    labels, images, ab, ids = make_sources(tmp_path / "src")
    a = load_pair_sources(labels=labels, images=images, palette=tmp_path / "src" / "palette.json")
    b = load_pair_sources(ab=ab, palette=tmp_path / "src" / "palette.json")
    assert a.classes == ["sky", "wall", "window"] and a.palette == [tuple(c) for c in PALETTE]
    assert torch.equal(a.labels, b.labels) and torch.equal(a.images, b.images) and a.images.shape == (12, 3, 16, 32)
    assert np.array_equal(a.labels[3].numpy(), ids[3])
    out = write_pairs(a, tmp_path / "pairs")
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["classes"] == ["sky", "wall", "window"] and meta["palette"] == PALETTE and meta["size"] == [16, 32]
    ds = open_source(str(out))
    assert torch.equal(ds.labels, a.labels) and ds.num_classes == 3
    td = get_task("paired").open(str(out), None)
    assert len(td.train) + len(td.val) == 12 and len(td.val) >= 1


def test_bad_pairs_are_refused_naming_the_file_and_nothing_is_written(tmp_path: Path) -> None:
    labels, images, ab, _ = make_sources(tmp_path / "src")
    pal = tmp_path / "src" / "palette.json"
    runner = CliRunner()

    def create(*args: str) -> tuple[int, str]:
        r = runner.invoke(cli, ["dataset", "create-pairs", "--dest", str(tmp_path / "out"), *args])
        return r.exit_code, r.output

    (images / "p05.png").rename(images / "zz.png")
    code, out = create("--labels", str(labels), "--images", str(images), "--palette", str(pal))
    assert code == 1 and "p05" in out and "zz" in out and "do not pair up" in out
    (images / "zz.png").rename(images / "p05.png")
    Image.fromarray(np.full((16, 32, 3), 7, np.uint8)).save(labels / "p02.png")
    code, out = create("--labels", str(labels), "--images", str(images), "--palette", str(pal))
    assert code == 1 and "p02.png" in out and "(7, 7, 7)" in out and "not in the palette" in out
    Image.fromarray(np.zeros((8, 32, 3), np.uint8) + 255).save(labels / "p02.png")
    code, out = create("--labels", str(labels), "--images", str(images), "--palette", str(pal))
    assert code == 1 and "p02.png is 32x8" in out
    code, out = create("--ab", str(ab))
    assert code == 1 and "--palette" in out
    assert not (tmp_path / "out").exists()
    # id maps: an id >= the number of classes names the file
    ids_dir = tmp_path / "ids"
    ids_dir.mkdir()
    for f in sorted(images.iterdir()):
        Image.fromarray(np.ones((16, 32), np.uint8), mode="L").save(ids_dir / f.name)
    Image.fromarray(np.full((16, 32), 3, np.uint8), mode="L").save(ids_dir / "p07.png")
    with pytest.raises(ValueError, match=r"p07.png: label id 3 but the dataset has 3 classes"):
        load_pair_sources(labels=ids_dir, images=images, classes=["a", "b", "c"])
    Image.fromarray(np.full((16, 32), 2, np.uint8), mode="L").save(ids_dir / "p07.png")
    code, out = create("--labels", str(ids_dir), "--images", str(images))
    assert code == 0 and "12 pairs of 32x16, 3 classes" in out, out


def test_openmoji_edges_are_the_class_boundaries() -> None:
    seg, edges = open_source("openmoji-seg-32-n16"), open_source("openmoji-edges-32-n16")
    assert edges.classes == ["background", "edge"] and set(edges.labels.unique().tolist()) <= {0, 1}
    assert torch.equal(seg.images, edges.images)
    lab = seg.labels
    inner = (lab[:, 1:-1, 1:-1] != lab[:, 1:-1, 2:]) | (lab[:, 1:-1, 1:-1] != lab[:, 2:, 1:-1])
    assert bool(edges.labels[:, 1:-1, 1:-1][inner].eq(1).all()) and 0.02 < edges.labels.float().mean() < 0.6


class PaletteOracle(Translator):
    """Paints every pixel in its class colour: the segmentation metrics must find every class again."""

    def __init__(self, palette: list[tuple[int, int, int]]) -> None:
        super().__init__()
        self.palette, self.num_classes, self.img_resolution = palette, len(palette), 32
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return colorize_labels(labels, self.palette, self.num_classes).float() / 127.5 - 1 + 0 * self.w


def test_miou_and_pixel_accuracy_recover_palette_classes() -> None:
    from leangen.metrics import calc_metrics

    conf = confusion(torch.tensor([[0, 1, 1, 2]]), torch.tensor([[0, 1, 2, 2]]), 3)
    miou, acc = segmentation_scores(conf)
    assert acc == 0.75 and miou == pytest.approx((1 + 0.5 + 0.5) / 3)
    val = get_task("paired").open("openmoji-seg-32-n64", 32).val
    oracle = PaletteOracle(val.palette)
    records = calc_metrics(["miou", "pixel_acc"], oracle, val, device="cpu", progress=False)
    by = {r["metric"]: r for r in records}
    assert by["miou"]["results"]["miou"] == 1.0 and by["pixel_acc"]["results"]["pixel_acc"] == 1.0
    assert by["miou"]["higher_is_better"] and by["miou"]["protocol"]["on_targets"] == 1.0
    blank = PaletteOracle(val.palette)
    blank.forward = lambda labels: torch.ones(labels.shape[0], 3, *labels.shape[1:])  # type: ignore[method-assign]
    (rec,) = calc_metrics(["pixel_acc"], blank, val, device="cpu", progress=False)
    assert 0 < rec["results"]["pixel_acc"] < 1  # all white: only the background pixels are right


def test_a_non_square_paired_folder_trains_a_translator(tmp_path: Path) -> None:
    from leangen.train import TrainOptions, train

    labels, images, _, _ = make_sources(tmp_path / "src")  # 16x32 pairs, 3 classes
    out = write_pairs(load_pair_sources(labels=labels, images=images, palette=tmp_path / "src" / "palette.json"),
                      tmp_path / "pairs")
    res = train(TrainOptions(preset="asapnet-tiny32", data=str(out), outdir=str(tmp_path / "runs"), steps=1, batch=4,
                             device="cpu", progress=False, grid=4, metrics=["miou"], tick=0.004, snap=1,
                             hparams={"gan_weight": 1.0},
                             overrides={"G": {"num_classes": 3, "resolution": 16, "aspect": 2},
                                        "D": {"num_classes": 3}}))
    record = json.loads((res.run_dir / "metric-miou.jsonl").read_text().splitlines()[-1])
    assert 0 <= record["results"]["miou"] <= 1 and record["protocol"]["classes"] == 3


def make_instances(root: Path, labels: Path, h: int = 16, w: int = 32) -> Path:
    """Instance-id maps for every pair of ``labels``: 16-bit ids (Cityscapes-like 26001..), vertical stripes."""
    (root / "inst").mkdir()
    for f in sorted(labels.iterdir()):
        ids = np.full((h, w), 26001, np.uint16)
        ids[:, w // 2:] = 26002 + int(f.stem[1:])
        Image.fromarray(ids).save(root / "inst" / f.name)
    return root / "inst"


def test_instance_maps_are_stored_carried_and_checked(tmp_path: Path) -> None:
    from leangen.data.batch import collate
    from leangen.data.paired_folders import open_pairs
    from leangen.train.data import BatchStream, _cat

    labels, images, _, _ = make_sources(tmp_path / "src")
    pal, inst = tmp_path / "src" / "palette.json", make_instances(tmp_path / "src", labels)
    runner = CliRunner()

    def create(dest: str, *args: str) -> tuple[int, str]:
        r = runner.invoke(cli, ["dataset", "create-pairs", "--dest", str(tmp_path / dest), "--labels", str(labels),
                                "--images", str(images), "--palette", str(pal), *args])
        return r.exit_code, r.output

    code, out = create("pairs", "--instances", str(inst))
    assert code == 0 and "instance maps" in out, out
    ds = open_pairs(tmp_path / "pairs")
    assert json.loads((tmp_path / "pairs" / "dataset.json").read_text())["instances"] is True
    assert ds.instances is not None and ds.instances.shape == (12, 16, 32) and int(ds.instances[3, 0, -1]) == 26005
    item = ds[3]
    assert torch.equal(item["instances"], ds.instances[3])
    # the batch record carries instances through collate, get_batch, flip, select, to and the loader's concat
    b = collate([ds[0], ds[1]])
    assert b.instances is not None and torch.equal(b.instances, ds.instances[:2])
    flipped = b.flip_where(torch.tensor([True, False]))
    assert torch.equal(flipped.instances[0], b.instances[0].flip(-1))  # type: ignore[index]
    assert torch.equal(flipped.instances[1], b.instances[1])  # type: ignore[index]
    assert torch.equal(b.select(slice(1, 2)).to("cpu").instances, b.instances[1:2])  # type: ignore[arg-type]
    assert torch.equal(_cat([b, b]).instances, torch.cat([b.instances, b.instances]))  # type: ignore[arg-type]
    train = get_task("paired").open(str(tmp_path / "pairs"), None).train
    got = BatchStream(train, 4, mirror=True).next()
    assert got.instances is not None and got.instances.shape == (4, 16, 32)
    assert collate(ds.get_batch([0])).instances is not None and collate([{"image": b.image[0]}]).instances is None
    # mismatched names and sizes: clear errors naming the file, nothing written
    (inst / "p04.png").rename(inst / "q99.png")
    code, out = create("bad", "--instances", str(inst))
    assert code == 1 and "no instance map for pair(s) p04" in out and "no pair for instance map(s) q99" in out, out
    (inst / "q99.png").rename(inst / "p04.png")
    Image.fromarray(np.zeros((8, 32), np.uint16)).save(inst / "p04.png")
    code, out = create("bad", "--instances", str(inst))
    assert code == 1 and "p04.png is 32x8" in out and "labels/p04.png is 32x16" in out, out
    Image.fromarray(np.zeros((16, 32, 3), np.uint8)).save(inst / "p04.png")
    code, out = create("bad", "--instances", str(inst))
    assert code == 1 and "p04.png: a RGB image" in out, out
    assert not (tmp_path / "bad").exists()


def test_a_translator_with_instance_edges_trains_on_instance_pairs(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from leangen.models.asapnet import ASAPNet
    from leangen.models.multiscale_discriminator import MultiscaleDiscriminator
    from leangen.train import TrainOptions, train

    labels, images, _, _ = make_sources(tmp_path / "src")
    inst = make_instances(tmp_path / "src", labels)
    out = write_pairs(load_pair_sources(labels=labels, images=images, palette=tmp_path / "src" / "palette.json",
                                        instances=inst), tmp_path / "pairs")
    seen: dict[str, list[bool]] = {"G": [], "D": []}
    g_fwd, d_fwd = ASAPNet.forward, MultiscaleDiscriminator.forward

    def spy_g(self: ASAPNet, labels: torch.Tensor, instances: torch.Tensor | None = None) -> torch.Tensor:
        seen["G"].append(instances is not None and instances.shape == labels.shape)
        return g_fwd(self, labels, instances)

    def spy_d(self: MultiscaleDiscriminator, labels: torch.Tensor, image: torch.Tensor,
              instances: torch.Tensor | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        seen["D"].append(instances is not None)
        return d_fwd(self, labels, image, instances)

    monkeypatch.setattr(ASAPNet, "forward", spy_g)
    monkeypatch.setattr(MultiscaleDiscriminator, "forward", spy_d)
    from leangen.train.perceptual import vgg19_features

    vgg = tmp_path / "vgg19.pth"  # the VGG19 perceptual term from a user's file, through the hparams
    torch.save({f"features.{k}": v for k, v in vgg19_features().state_dict().items()}, vgg)
    res = train(TrainOptions(preset="asapnet-tiny32", data=str(out), outdir=str(tmp_path / "runs"), steps=1, batch=4,
                       device="cpu", progress=False, grid=4, metrics=[], tick=0.004, snap=1,
                       hparams={"gan_weight": 1.0, "perceptual_weight": 1.0, "perceptual_net": "vgg19",
                                "perceptual_weights": str(vgg)},
                       overrides={"G": {"num_classes": 3, "resolution": 16, "aspect": 2, "instance_edge": True},
                                  "D": {"num_classes": 3, "instance_edge": True}}))
    row = json.loads((res.run_dir / "stats.jsonl").read_text().splitlines()[-1])
    assert row["perceptual"] > 0
    assert seen["G"] and all(seen["G"]) and seen["D"] and all(seen["D"])
    # translators whose forward takes labels only (PaletteOracle here) are not handed instance maps
    from leangen.train.paired import _instance_kwargs

    ids = torch.zeros(1, 4, 4, dtype=torch.long)
    assert _instance_kwargs(PaletteOracle([(0, 0, 0)]), ids) == {}
    assert _instance_kwargs(MultiscaleDiscriminator(num_classes=3), ids)["instances"] is ids
