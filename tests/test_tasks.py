"""One loop for every task: a likelihood model, a paired translator and a distilled generator each train, snapshot,
resume exactly, evaluate their metric and load with ``leangen.load`` — with no special case in the loop."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import leangen
from leangen import runs
from leangen.data.batch import Batch, collate
from leangen.data.splits import split_indices, train_val
from leangen.models.base import LikelihoodModel, StyleGenerator, Translator
from leangen.tasks import get_task, open_source
from leangen.train import TrainOptions, train
from leangen.train.options import parse_hparam, resolve_options

RES = 32
TINY_G = {"channel_base": 16, "max_channels": 16, "z_dim": 32, "w_dim": 32, "mapping_layers": 2}


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private cache for the built-in OpenMoji renders (64 glyphs at 32 px: a second to render)."""
    return tmp_path_factory.mktemp("leangen-cache")


@pytest.fixture(autouse=True)
def _private_cache(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEANGEN_CACHE", str(cache))


def opts(tmp_path: Path, preset: str, data: str, **kw) -> TrainOptions:
    base = dict(preset=preset, data=data, outdir=str(tmp_path / "runs"), batch=8, tick=0.016, snap=1, device="cpu",
                progress=False, grid=4)
    base.update(kw)
    return TrainOptions(**base)


def weights(snapshot: Path, role: str) -> dict[str, torch.Tensor]:
    return load_file(str(snapshot / role / "model.safetensors"))


def assert_same_weights(a: Path, b: Path, roles: list[str]) -> None:
    for role in roles:
        wa, wb = weights(a, role), weights(b, role)
        assert wa.keys() == wb.keys()
        assert all(torch.equal(wa[k], wb[k]) for k in wa), role


def metric_lines(run: Path, name: str) -> list[dict]:
    return [json.loads(x) for x in (run / f"metric-{name}.jsonl").read_text().splitlines()]


# ----------------------------------------------------------------------------------------------------------------------
# The three tasks through the one loop

def test_likelihood_model_trains_resumes_and_reports_bpd(tmp_path: Path) -> None:
    data = "openmoji-32-n64"
    straight = train(opts(tmp_path / "a", "independent-pixels-32", data, steps=6))
    first = train(opts(tmp_path / "b", "independent-pixels-32", data, steps=2))
    resumed = train(TrainOptions(resume=str(first.run_dir), steps=6, device="cpu", progress=False))
    assert resumed.step == 6 and resumed.run_dir == first.run_dir
    assert_same_weights(straight.snapshot, resumed.snapshot, ["model"])  # type: ignore[arg-type]

    # The preset's default metric is bpd, on the validation split; lower is better and it improves.
    records = metric_lines(straight.run_dir, "bpd")
    assert [r["consumes"] for r in records] == ["log_likelihood"] * 3 and not records[0]["higher_is_better"]
    values = [r["results"]["bpd"] for r in records]
    assert values[-1] < values[0] <= 8.0
    best = runs.load_state(straight.snapshot)["best_metric"]  # type: ignore[arg-type]
    assert best["name"] == "bpd" and best["value"] == min(values)

    model = leangen.load(straight.run_dir)
    assert isinstance(model, LikelihoodModel)
    td = get_task("likelihood").open(data, RES)
    assert len(td.val) == records[-1]["protocol"].get("num_images", len(td.val))
    val = collate([td.val[i] for i in range(len(td.val))]).image
    direct = model.bits_per_dim(val).mean().item()
    assert direct == pytest.approx(values[-1], rel=1e-5)
    # no preview before training for an autoregressive-style task, a grid at each snapshot
    assert not (straight.run_dir / "fakes_init.png").exists()
    assert (straight.run_dir / "fakes000000.png").is_file()


def test_paired_translator_trains_resumes_and_reports_psnr(tmp_path: Path) -> None:
    data = "openmoji-seg-32-n64"
    kw = dict(mirror=True, hparams={"gan_weight": 0.5, "fm_weight": 1.0})  # every phase on, mirrored pairs
    straight = train(opts(tmp_path / "a", "conv-translator-tiny32", data, steps=4, **kw))
    first = train(opts(tmp_path / "b", "conv-translator-tiny32", data, steps=2, **kw))
    resumed = train(TrainOptions(resume=str(first.run_dir), steps=4, device="cpu", progress=False))
    assert_same_weights(straight.snapshot, resumed.snapshot, ["G", "G_ema", "D"])  # type: ignore[arg-type]

    records = metric_lines(straight.run_dir, "psnr")
    assert records[-1]["consumes"] == "paired" and records[-1]["higher_is_better"]
    rows = [json.loads(x) for x in (straight.run_dir / "stats.jsonl").read_text().splitlines()]
    assert {"l1", "loss_D", "fm"} <= set(rows[-1])

    model = leangen.load(straight.run_dir)
    assert isinstance(model, Translator) and model.num_classes == 9
    td = get_task("paired").open(data, RES)
    labels = collate([td.val[i] for i in range(3)]).condition
    out = model.translate(labels)
    assert out.shape == (3, 3, RES, RES) and out.abs().max() <= 1
    with pytest.raises(ValueError, match="label ids must be in 0..8"):
        model.translate(torch.full((1, RES, RES), 9))


def test_distillation_from_a_frozen_teacher(tmp_path: Path) -> None:
    teacher_run = train(opts(tmp_path / "t", "stylegan2-tiny32", "openmoji-32-n64", steps=2, metrics=[],
                             overrides={"G": TINY_G, "D": {"channel_base": 16, "max_channels": 16}}))
    student_g = dict(TINY_G, channel_base=8, max_channels=8)
    kw = dict(hparams={"teacher": str(teacher_run.run_dir)}, overrides={"G": student_g},
              metrics=["teacher_psnr8"])
    straight = train(opts(tmp_path / "a", "stylegan2-tiny32-student", "openmoji-32-n64", steps=4, **kw))
    first = train(opts(tmp_path / "b", "stylegan2-tiny32-student", "openmoji-32-n64", steps=2, **kw))
    resumed = train(TrainOptions(resume=str(first.run_dir), steps=4, device="cpu", progress=False))
    assert_same_weights(straight.snapshot, resumed.snapshot, ["G", "G_ema"])  # type: ignore[arg-type]

    snap = straight.snapshot
    assert snap is not None and not (snap / "teacher").exists()  # frozen: never rewritten into snapshots
    index = json.loads((snap / "index.json").read_text())
    assert index["objective"] == "distill" and index["entry"] == "G_ema"
    assert index["modules"]["teacher"]["role"] == "frozen"
    assert index["modules"]["teacher"]["source"] == str(teacher_run.run_dir.resolve())
    student, teacher = leangen.load(straight.run_dir), leangen.load(snap, role="teacher")
    assert isinstance(student, StyleGenerator) and student.num_params() < teacher.num_params()
    assert metric_lines(straight.run_dir, "teacher_psnr8")[-1]["higher_is_better"]

    # The teacher changed on disk: resuming refuses instead of silently distilling from another model.
    teacher_snap = runs.latest_snapshot(teacher_run.run_dir)
    g = leangen.load(teacher_snap)
    with torch.no_grad():
        next(g.parameters()).add_(1.0)
    g.save_pretrained(teacher_snap / "G_ema")  # type: ignore[operator]
    meta = json.loads((teacher_snap / runs.INDEX_NAME).read_text())  # type: ignore[operator]
    # checksums that match the change, so the refusal below comes from the frozen-teacher check
    runs._write_index(teacher_snap, {k: v for k, v in meta.items() if k != "files"})  # type: ignore[arg-type]
    with pytest.raises(runs.IncompatibleCheckpointError, match="frozen teacher"):
        train(TrainOptions(resume=str(first.run_dir), steps=6, device="cpu", progress=False))


def test_distillation_learns_from_the_real_images_with_recon_weight(tmp_path: Path) -> None:
    """``recon_weight`` alone (no teacher, feature or adversarial term) still trains the student: toward the data."""
    data = "openmoji-seg-32-n64"
    teacher = train(opts(tmp_path / "t", "resnet-tiny32", data, steps=1, metrics=[])).run_dir
    run = train(opts(tmp_path / "s", "resnet-tiny32-distill", data, steps=40, batch=8, tick=0.04, metrics=[],
                     hparams={"teacher": str(teacher), "output_weight": 0.0, "feature_weight": 0.0,
                              "gan_weight": 0.0, "recon_weight": 1.0, "lr": 0.01})).run_dir
    rows = [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines()]
    assert "l1_real" in rows[0] and rows[-1]["l1_real"] < 0.8 * rows[0]["l1_real"]
    # the shipped student is the preset's average of the student's weights (half-life 0.5 kimg, at most 0.2 x the
    # images seen: 64 of the 320 after 40 steps at batch 8), not the raw G
    import leangen

    assert rows[-1]["ema_beta"] == pytest.approx(0.5 ** (8 / min(500, 0.2 * 40 * 8)))
    shipped, raw = leangen.load(run), leangen.load(run, role="G")
    x = torch.randint(0, 9, (2, 32, 32))
    assert not torch.allclose(shipped(x), raw(x), atol=1e-4)

    with pytest.raises(ValueError, match="recon_weight needs paired data"):
        train(opts(tmp_path / "g", "stylegan2-tiny32-student", "openmoji-32-n64", steps=1, metrics=[],
                   hparams={"teacher": str(tmp_path / "t"), "recon_weight": 1.0}))


def test_distill_needs_a_teacher(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs a teacher"):
        train(opts(tmp_path, "stylegan2-tiny32-student", "openmoji-32-n64", steps=1, metrics=[]))


# ----------------------------------------------------------------------------------------------------------------------
# Pieces

def test_load_never_imports_the_trainer(tmp_path: Path) -> None:
    run = train(opts(tmp_path, "independent-pixels-32", "openmoji-32-n64", steps=1, metrics=[])).run_dir
    code = ("import sys, leangen; m = leangen.load(sys.argv[1]); "
            "bad = sorted(k for k in sys.modules if k.startswith('leangen.train')); "
            "assert not bad, bad; print(m.kind)")
    out = subprocess.run([sys.executable, "-c", code, str(run)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "likelihood"


def test_tasks_check_the_data_kind(cache: Path) -> None:
    with pytest.raises(ValueError, match="holds images only"):
        get_task("paired").open("openmoji-32-n64", RES)
    with pytest.raises(ValueError, match="label map -> image pairs"):
        get_task("likelihood").open("openmoji-seg-32-n64", RES)
    with pytest.raises(ValueError, match="at 32px but the model works at 64px"):
        open_source("openmoji-32-n64", 64)
    td = get_task("unconditional").open("openmoji-32-n64", RES)
    assert td.train is td.val is td.metric_data  # StyleGAN protocol: metrics against the training images


def test_splits_are_fixed_disjoint_and_stable() -> None:
    names = [f"img{i:04d}.png" for i in range(500)]
    tr, va = split_indices(len(names), names)
    assert not set(tr) & set(va) and len(tr) + len(va) == 500 and 25 <= len(va) <= 80
    # adding items never moves old ones across the split
    tr2, va2 = split_indices(600, names + [f"new{i}.png" for i in range(100)])
    assert set(va) <= set(va2) and set(tr) <= set(tr2)
    tiny_tr, tiny_va = split_indices(2, ["a", "b"])
    assert len(tiny_tr) == len(tiny_va) == 1


def test_mirror_flips_label_map_and_image_together() -> None:
    image = torch.arange(2 * 3 * 2 * 4, dtype=torch.uint8).reshape(2, 3, 2, 4)
    labels = torch.arange(2 * 2 * 4).reshape(2, 2, 4)
    out = Batch(image, labels).flip_where(torch.tensor([True, False]))
    assert torch.equal(out.image[0], image[0].flip(-1)) and torch.equal(out.condition[0], labels[0].flip(-1))
    assert torch.equal(out.image[1], image[1]) and torch.equal(out.condition[1], labels[1])


def test_presets_may_set_loop_options_and_hparams_parse() -> None:
    o = resolve_options(TrainOptions(preset="independent-pixels-32", data="openmoji"))
    assert o.metrics == ["bpd"] and o.batch == 32 and o.hparams["lr"] == 0.01
    o = resolve_options(TrainOptions(preset="conv-translator-tiny32", data="openmoji-seg",
                                     hparams={"gan_weight": 1}))
    assert o.hparams["gan_weight"] == 1 and o.metrics == ["psnr"]
    assert parse_hparam("betas=[0, 0.99]") == ("betas", [0, 0.99])
    assert parse_hparam("teacher=runs/00000-x") == ("teacher", "runs/00000-x")
    with pytest.raises(ValueError, match="training-loop option"):
        resolve_options(TrainOptions(preset="independent-pixels-32", data="openmoji", hparams={"batch": 4}))
    with pytest.raises(ValueError, match="unknown likelihood hyper-parameter 'r1_gamma'"):
        resolve_options(TrainOptions(preset="independent-pixels-32", data="openmoji", hparams={"r1_gamma": 1}))


def test_split_views_forward_batches_and_fingerprints(cache: Path) -> None:
    ds = open_source("openmoji-seg-32-n64", RES)
    tr, va = train_val(ds)
    b = va.get_batch([0, 1])
    assert b["image"].shape == (2, 3, RES, RES) and b["condition"].shape == (2, RES, RES)
    assert torch.equal(b["image"][1], ds[int(va.indices[1])]["image"])
    assert tr.fingerprint() != va.fingerprint() and va.fingerprint().startswith(ds.fingerprint())


def test_load_passes_over_a_damaged_newest_snapshot(tmp_path: Path) -> None:
    run = train(opts(tmp_path, "independent-pixels-32", "openmoji-32-n64", steps=4, metrics=[])).run_dir
    older, newest = runs.list_snapshots(run)[-2:]
    weights_file = newest / "model" / "model.safetensors"
    weights_file.write_bytes(weights_file.read_bytes()[:-8] + b"\0" * 8)  # same size, other bytes
    with pytest.warns(UserWarning, match="passed over"):
        model = leangen.load(run)
    expected = leangen.load(older)
    assert torch.equal(model.logits, expected.logits)
    with pytest.raises(runs.CorruptSnapshotError, match="model.safetensors"):
        leangen.load(newest)
