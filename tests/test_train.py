"""Training loop, GAN objective, snapshots and resume, on a StyleGAN2 shrunk to ~25k parameters per network."""
from __future__ import annotations

import errno
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file
from torch.utils.data import TensorDataset

import leangen
from leangen.train import NonFiniteLossError, TrainingError, TrainOptions, train
from leangen import runs as ckpt
from leangen.train.augment import DiffAugment, parse_policy
from leangen.train.data import BatchStream
from leangen.train.gan import GANObjective, lazy_adam
from leangen.train.loop import ema_beta

TINY = {"G": {"channel_base": 16, "max_channels": 16, "z_dim": 32, "w_dim": 32, "mapping_layers": 2},
        "D": {"channel_base": 16, "max_channels": 16}}
TINY_ARGS = [f"--override={role}.{k}={v}" for role, kw in TINY.items() for k, v in kw.items()]


def random_images(n: int = 12, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g))


def options(tmp_path: Path, **kw) -> TrainOptions:
    """A tiny run: batch 4, a tick every 2 steps, a snapshot every tick."""
    base = dict(preset="stylegan2-tiny32", data="mem", outdir=str(tmp_path / "runs"), batch=4, tick=0.008, snap=1,
                device="cpu", progress=False, overrides=TINY, grid=4)
    base.update(kw)
    return TrainOptions(**base)


def write_pngs(folder: Path, n: int = 8, res: int = 32) -> Path:
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (res, res, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    return folder


def stats_rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines()]


# ----------------------------------------------------------------------------------------------------------------------
# (a) artefacts of a short run

def test_short_run_writes_run_directory(tmp_path: Path) -> None:
    res = train(options(tmp_path, steps=4), random_images())
    run = res.run_dir
    assert res.status == "done" and res.step == 4 and res.cur_nimg == 16
    assert re.fullmatch(r"00000-stylegan2-tiny32-mem", run.name)
    doc = json.loads((run / "training_options.json").read_text())
    assert doc["preset"] == "stylegan2-tiny32" and doc["steps"] == 4 and doc["batch"] == 4
    assert doc["hparams"]["r1_gamma"] == 0.05  # the preset's default came through
    assert doc["run"]["components"]["G"]["config"]["channel_base"] == 16
    log = (run / "log.txt").read_text()
    assert "tick 2" in log and "Done" in log
    rows = stats_rows(run)
    assert [r["tick"] for r in rows] == [1, 2] and rows[-1]["step"] == 4
    assert {"loss_G", "loss_D", "r1_penalty", "sec_per_kimg", "kimg"} <= set().union(*rows)
    for png in ("reals.png", "fakes_init.png", "fakes000000.png", "curves.png"):
        assert (run / png).stat().st_size > 100
    assert list(run.glob("events.out.tfevents.*"))  # TensorBoard scalars
    snaps = ckpt.list_snapshots(run)
    assert [s.name for s in snaps] == ["snapshot-000000", "snapshot-000000-s000000004"]  # unique, sorted by step
    assert ckpt.latest_snapshot(run) == snaps[-1] == res.snapshot
    # leangen.load finds G_ema through the run directory and through the snapshot
    G = leangen.load(run)
    assert G.model_type == "stylegan2-generator" and not G.training
    torch.testing.assert_close(G.state_dict(), leangen.load(res.snapshot).state_dict())
    assert len(G.generate(seeds=[1, 2])) == 2
    # G_ema differs from G (it is an average), D is saved too
    assert any(not torch.equal(a, b) for a, b in zip(G.parameters(), leangen.load(run, role="G").parameters()))
    assert leangen.load(run, role="D").model_type == "stylegan2-discriminator"
    state = torch.load(res.snapshot / ckpt.STATE_NAME, weights_only=True)
    assert state["step"] == 4 and state["data"]["position"] == 16 and set(state["optimizers"]) == {"G", "D"}
    # a second run takes the next id
    assert train(options(tmp_path, steps=1), random_images()).run_dir.name.startswith("00001-")


# ----------------------------------------------------------------------------------------------------------------------
# (b) resume is bit-exact

def _tensors_equal(a: dict, b: dict) -> list[str]:
    return [k for k in a if not torch.equal(a[k], b[k])]


def test_resume_is_bit_identical(tmp_path: Path) -> None:
    # Every stochastic feature on: style mixing, path length, R1, DiffAugment, mirror, EMA ramp-up.
    kw = dict(mirror=True, ema_rampup=0.05, hparams={"r1_interval": 2, "pl_weight": 2.0, "pl_interval": 2,
                                                      "style_mixing": 0.9, "diffaugment": "color,translation,cutout"})
    data = random_images(10)  # not a multiple of the batch: batches span epochs
    straight = train(options(tmp_path / "a", steps=7, **kw), data)
    first = train(options(tmp_path / "b", steps=3, **kw), data)
    resumed = train(TrainOptions(resume=str(first.run_dir), steps=7, device="cpu", progress=False), data)
    assert resumed.run_dir == first.run_dir and resumed.step == 7
    for role in ("G", "D", "G_ema"):
        a = load_file(str(straight.snapshot / role / "model.safetensors"))
        b = load_file(str(resumed.snapshot / role / "model.safetensors"))
        assert a.keys() == b.keys() and not _tensors_equal(a, b), role
    sa, sb = ckpt.load_state(straight.snapshot), ckpt.load_state(resumed.snapshot)
    for name in ("G", "D"):
        oa, ob = sa["optimizers"][name]["state"], sb["optimizers"][name]["state"]
        assert oa.keys() == ob.keys()
        for k in oa:
            assert not _tensors_equal(oa[k], ob[k]), (name, k)
    assert torch.equal(sa["objective_state"]["pl_mean"], sb["objective_state"]["pl_mean"])
    assert sa["data"] == sb["data"] and sa["cur_nimg"] == sb["cur_nimg"] == 28
    assert torch.equal(sa["rng"][0]["torch"], sb["rng"][0]["torch"])
    # the resumed run continued in the same directory and its stats line up with the straight run's
    assert [r["step"] for r in stats_rows(resumed.run_dir)][-1] == 7
    assert "Resuming" in (resumed.run_dir / "log.txt").read_text()


def test_resume_keeps_the_tick_schedule(tmp_path: Path) -> None:
    """Ticks (and so snapshots) fall at the same steps whether or not the run was stopped and resumed."""
    first = train(options(tmp_path, steps=4), random_images())
    resumed = train(TrainOptions(resume=str(first.run_dir), steps=8, device="cpu", progress=False), random_images())
    assert [r["step"] for r in stats_rows(resumed.run_dir)] == [2, 4, 6, 8]
    assert [ckpt.load_state(s)["step"] for s in ckpt.list_snapshots(resumed.run_dir)] == [4, 6, 8]


def test_relative_data_path_is_stored_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    write_pngs(work / "imgs", n=6)
    monkeypatch.chdir(work)
    first = train(TrainOptions(preset="stylegan2-tiny32", data="imgs", outdir=str(tmp_path / "runs"), steps=2,
                               batch=4, tick=0.008, device="cpu", progress=False, overrides=TINY, grid=4))
    doc = json.loads((first.run_dir / "training_options.json").read_text())
    assert doc["data"] == str((work / "imgs").resolve()) and doc["data_arg"] == "imgs"
    monkeypatch.chdir(tmp_path)  # resume from elsewhere: the data is still found
    more = train(TrainOptions(resume=str(first.run_dir), steps=4, device="cpu", progress=False))
    assert more.step == 4


def test_training_on_one_image_warns(tmp_path: Path) -> None:
    res = train(options(tmp_path, steps=1), random_images(1))
    assert "the training split has 1 item(s)" in (res.run_dir / "log.txt").read_text()


def test_resume_latest_and_mismatch_errors(tmp_path: Path) -> None:
    data = random_images()
    first = train(options(tmp_path, steps=2), data)
    # "latest" = newest run in outdir; extending --steps continues it
    more = train(TrainOptions(resume="latest", outdir=str(tmp_path / "runs"), steps=4, device="cpu",
                              progress=False), data)
    assert more.run_dir == first.run_dir and more.step == 4
    # other preset
    with pytest.raises(ValueError, match="preset 'stylegan2-tiny32'"):
        train(TrainOptions(resume=str(first.run_dir), preset="stylegan2-tiny64", steps=6, device="cpu",
                           progress=False), data)
    # same preset, other architecture (overrides differ from the run's)
    with pytest.raises(ckpt.IncompatibleCheckpointError, match="channel_base"):
        train(TrainOptions(resume=str(first.run_dir), steps=6, device="cpu", progress=False,
                           overrides={"G": {**TINY["G"], "channel_base": 32}, "D": TINY["D"]}), data)
    with pytest.raises(FileNotFoundError, match="no run with a snapshot"):
        train(TrainOptions(resume="latest", outdir=str(tmp_path / "empty"), device="cpu"), data)


# ----------------------------------------------------------------------------------------------------------------------
# (c) atomic snapshots, keep-last-N

def test_full_disk_keeps_previous_snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = ckpt._write_state
    calls = {"n": 0}

    def flaky_write(state, path):
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(state, path)
        with open(path, "wb") as f:  # a partial file, then the disk is full
            f.write(b"\0" * 100)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ckpt, "_write_state", flaky_write)
    with pytest.raises(TrainingError, match="no space left on device") as info:
        train(options(tmp_path, steps=6), random_images())
    assert "snapshot-000000 is intact" in str(info.value) and "--resume" in str(info.value)
    run = next((tmp_path / "runs").iterdir())
    entries = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert entries == ["snapshot-000000"]  # no temp folder, no half snapshot
    assert ckpt.load_state(run / "checkpoints" / "snapshot-000000")["step"] == 2
    leangen.load(run)  # still loadable
    assert "no space left on device" in (run / "log.txt").read_text()


def test_keep_last_n(tmp_path: Path) -> None:
    res = train(options(tmp_path, steps=5, tick=0.004, keep=2), random_images())
    names = [p.name for p in (res.run_dir / "checkpoints").iterdir()]
    assert sorted(names) == ["snapshot-000000-s000000004", "snapshot-000000-s000000005"]
    assert ckpt.latest_snapshot(res.run_dir).name == "snapshot-000000-s000000005"


def test_resume_from_older_snapshot_sets_newer_aside(tmp_path: Path) -> None:
    res = train(options(tmp_path, steps=4), random_images())
    older = res.run_dir / "checkpoints" / "snapshot-000000"
    again = train(TrainOptions(resume=str(older), steps=3, device="cpu", progress=False), random_images())
    names = sorted(p.name for p in (res.run_dir / "checkpoints").iterdir())
    assert names == ["snapshot-000000", "snapshot-000000-s000000003", "superseded-snapshot-000000-s000000004"]
    assert ckpt.latest_snapshot(res.run_dir) == again.snapshot
    assert [r["step"] for r in stats_rows(res.run_dir)] == [2, 3]  # rows of the abandoned continuation dropped


def test_crash_mid_snapshot_leaves_nothing_partial(tmp_path: Path) -> None:
    # A killed process leaves a temp folder; it is never taken for a snapshot and is cleaned on the next start.
    res = train(options(tmp_path, steps=2), random_images())
    junk = res.run_dir / "checkpoints" / ".tmp-snapshot-000001-999"
    (junk / "G").mkdir(parents=True)
    assert ckpt.latest_snapshot(res.run_dir) == res.snapshot
    train(TrainOptions(resume=str(res.run_dir), steps=3, device="cpu", progress=False), random_images())
    assert not junk.exists()


# ----------------------------------------------------------------------------------------------------------------------
# (d) non-finite loss, Ctrl-C

def test_nan_stops_and_keeps_last_good_snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    orig = GANObjective.train_step

    def poisoned(self, batch, step):
        if step == 5:  # a NaN weight in D's last layer: every loss becomes NaN
            self.D.final_linear[-1].weight.data.fill_(float("nan"))
        return orig(self, batch, step)

    monkeypatch.setattr(GANObjective, "train_step", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"loss_G became nan at step 5") as info:
        train(options(tmp_path, steps=10), random_images())
    run = next((tmp_path / "runs").iterdir())
    last = ckpt.latest_snapshot(run)
    assert last is not None and last.name == "snapshot-000000-s000000004"
    assert str(last) in str(info.value)
    assert ckpt.load_state(last)["step"] == 4
    for role in ("G", "D", "G_ema"):
        assert all(torch.isfinite(t).all() for t in load_file(str(last / role / "model.safetensors")).values())
    assert "loss_G became nan" in (run / "log.txt").read_text()


def test_ctrl_c_snapshots_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    orig = GANObjective.train_step

    def interrupted(self, batch, step):
        if step == 2:
            signal.raise_signal(signal.SIGINT)  # as if the user pressed Ctrl-C during step 2
        return orig(self, batch, step)

    monkeypatch.setattr(GANObjective, "train_step", interrupted)
    launched_with = signal.getsignal(signal.SIGINT)  # SIG_IGN under nohup or as a background job
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a live Ctrl-C, however the tests were launched
    try:
        res = train(options(tmp_path, steps=20, snap=100), random_images())
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler before the run is back
    finally:
        signal.signal(signal.SIGINT, launched_with)
    assert res.status == "interrupted" and res.step == 3  # the step in flight finished
    assert ckpt.load_state(res.snapshot)["step"] == 3
    log = (res.run_dir / "log.txt").read_text()
    assert "SIGINT received" in log and f"leangen train --resume {res.run_dir}" in log
    monkeypatch.setattr(GANObjective, "train_step", orig)
    done = train(TrainOptions(resume=str(res.run_dir), steps=5, device="cpu", progress=False), random_images())
    assert done.status == "done" and done.step == 5


def test_ignored_sigint_stays_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run started with SIGINT ignored (nohup, a background job) keeps ignoring it, and leaves it ignored."""
    orig = GANObjective.train_step

    def interrupted(self, batch, step):
        if step == 1:
            signal.raise_signal(signal.SIGINT)
        return orig(self, batch, step)

    monkeypatch.setattr(GANObjective, "train_step", interrupted)
    launched_with = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        res = train(options(tmp_path, steps=3, snap=100), random_images())
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, launched_with)
    assert res.status == "done" and res.step == 3
    assert "SIGINT received" not in (res.run_dir / "log.txt").read_text()


def test_second_ctrl_c_aborts_without_snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    orig = GANObjective.train_step

    def twice(self, batch, step):
        if step == 1:
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)  # impatient user
        return orig(self, batch, step)

    monkeypatch.setattr(GANObjective, "train_step", twice)
    launched_with = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        res = train(options(tmp_path, steps=20, snap=100), random_images())
    finally:
        signal.signal(signal.SIGINT, launched_with)
    assert res.status == "aborted" and res.snapshot is None
    assert ckpt.list_snapshots(res.run_dir) == []
    assert "without a snapshot" in (res.run_dir / "log.txt").read_text()


def test_raw_keyboard_interrupt_saves_snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    orig = GANObjective.train_step

    def boom(self, batch, step):
        if step == 3:
            raise KeyboardInterrupt
        return orig(self, batch, step)

    monkeypatch.setattr(GANObjective, "train_step", boom)
    res = train(options(tmp_path, steps=20, snap=100), random_images())
    assert res.status == "interrupted" and ckpt.load_state(res.snapshot)["step"] == 3


# ----------------------------------------------------------------------------------------------------------------------
# (e) two processes over gloo

@pytest.mark.skipif(not shutil.which("torchrun") and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun not installed")
def test_ddp_two_processes_stay_in_sync(tmp_path: Path) -> None:
    data = write_pngs(tmp_path / "pngs")
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "leangen", "train",
           "--preset", "stylegan2-tiny32", "--data", str(data), "--outdir", str(tmp_path / "runs"), "--steps", "4",
           "--batch", "4", "--tick", "0.008", "--snap", "1", "--grid", "4", "--device", "cpu", "--no-progress",
           "--mixing", "0.5", "--pl-weight", "1", *TINY_ARGS]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)  # a hang guard, not a speed test
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = next((tmp_path / "runs").iterdir())
    doc = json.loads((run / "training_options.json").read_text())
    assert doc["run"]["world_size"] == 2 and doc["run"]["batch_per_process"] == 2
    sync = re.findall(r"ranks in sync at step (\d+): parameter checksums per rank (.*)", (run / "log.txt").read_text())
    assert [int(s) for s, _ in sync] == [2, 4]
    for _, sums in sync:
        per_rank = json.loads(sums)
        assert len(per_rank) == 2 and per_rank[0] == per_rank[1]
    # rank 0 saved the whole state, with both ranks' RNG states; the weights are what rank 0 checked
    state = ckpt.load_state(ckpt.latest_snapshot(run))
    assert state["world_size"] == 2 and len(state["rng"]) == 2 and state["cur_nimg"] == 16
    G = leangen.load(run, role="G")
    with torch.no_grad():
        assert sum(float(p.double().sum()) for p in G.parameters()) == json.loads(sync[-1][1])[0]["G"]


# ----------------------------------------------------------------------------------------------------------------------
# (f) it learns

@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread: float reductions then run in one order, so the trajectory is the same on any machine
    (it differs slightly between 1 and 2 threads) and no other load can reorder them."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_learns_a_trivially_easy_dataset(tmp_path: Path, one_thread: None) -> None:
    # Deterministic at one thread; the bounds below have wide margins over the measured values (2026-12-04): margin
    # gain 2.24 (bound 0.5), final loss_D 0.47 (bound 1.18), d1/d0 0.59 (bound 0.8); 2 threads: 2.33, 0.45, 0.60.
    color = torch.tensor([220, 40, 40], dtype=torch.uint8).view(1, 3, 1, 1)
    data = TensorDataset(color.expand(16, 3, 32, 32).clone())
    res = train(options(tmp_path, steps=48, batch=8, tick=0.064, snap=100, ema_kimg=0.1,
                        hparams={"diffaugment": "none"}), data)
    rows = stats_rows(res.run_dir)
    assert len(rows) == 6
    # D separates real from fake better and better, and its loss falls well below chance (2 ln 2)
    margins = [r["D_real"] - r["D_fake"] for r in rows]
    assert margins[-1] > margins[0] + 0.5
    assert rows[-1]["loss_D"] < 0.85 * 2 * math.log(2)
    # ... and G moves toward the colour: closer than at initialization
    from leangen.registry import get_preset
    from leangen.train.gan import build_component

    torch.manual_seed(0)  # the loop seeds the same way before building
    G0 = build_component(get_preset("stylegan2-tiny32"), "G", TINY)
    G = leangen.load(res.run_dir, role="G")
    target = color.float() / 127.5 - 1
    z = torch.randn(32, G.z_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        d0 = (G0(z, noise_mode="const") - target).abs().mean().item()
        d1 = (G(z, noise_mode="const") - target).abs().mean().item()
    assert d1 < 0.8 * d0, (d0, d1)


def test_bf16_autocast_path_runs(tmp_path: Path) -> None:
    # --amp is meant for CUDA; on the CPU it only checks that every phase (R1, path length) works under autocast.
    res = train(options(tmp_path, steps=2, amp=True, hparams={"pl_weight": 2.0, "pl_interval": 1, "r1_interval": 1}),
                random_images())
    assert res.status == "done" and {"pl_penalty", "r1_penalty"} <= set(stats_rows(res.run_dir)[-1])


# ----------------------------------------------------------------------------------------------------------------------
# (g) command line

def test_cli_dry_run_prints_resolved_options() -> None:
    from leangen.cli.train import command

    r = CliRunner().invoke(command, ["--preset", "stylegan2-tiny32", "--data", "openmoji", "--dry-run", "--kimg", "5",
                                     "--r1-gamma", "0.2", "--mixing", "0.5", "--metrics", "none", *TINY_ARGS])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["batch"] == 16 and doc["kimg"] == 5 and doc["metrics"] == []
    assert doc["hparams"]["r1_gamma"] == 0.2 and doc["hparams"]["style_mixing"] == 0.5
    assert doc["hparams"]["diffaugment"] == "color,translation"  # preset default
    assert doc["overrides"]["G"]["channel_base"] == 16


@pytest.mark.parametrize("args, message", [
    (["--preset", "stylegan2-tin", "--data", "openmoji"], "unknown preset 'stylegan2-tin'"),
    (["--preset", "stylegan2-tiny32", "--data", "no/such/data.zip"], "no dataset at 'no/such/data.zip'"),
    (["--data", "openmoji"], "--preset is required"),
    (["--preset", "stylegan2-tiny32", "--data", "openmoji", "--kimg", "1", "--steps", "2"], "not both"),
    (["--preset", "stylegan2-tiny32", "--data", "openmoji", "--diffaugment", "colour"], "unknown DiffAugment"),
    (["--preset", "stylegan2-tiny32", "--data", "openmoji", "--override", "G.x"], "bad override"),
    (["--resume", "no/such/run"], "no such run"),
])
def test_cli_bad_input_fails_cleanly(args: list[str], message: str) -> None:
    from leangen.cli.train import command

    r = CliRunner().invoke(command, [*args, "--dry-run"] if "--resume" not in args else args)
    assert r.exit_code == 1 and message in r.output, r.output
    assert "Traceback" not in r.output


def test_cli_trains_and_reports_errors(tmp_path: Path) -> None:
    from leangen.cli.train import command

    data = write_pngs(tmp_path / "pngs", n=4)
    out = str(tmp_path / "runs")
    args = ["--preset", "stylegan2-tiny32", "--data", str(data), "--outdir", out, "--steps", "2", "--batch", "4",
            "--grid", "4", "--device", "cpu", "--no-progress", *TINY_ARGS]
    r = CliRunner().invoke(command, args)
    assert r.exit_code == 0, r.output
    run = Path(out) / "00000-stylegan2-tiny32-pngs"
    assert ckpt.latest_snapshot(run) is not None
    # resuming with a different model is a clean error
    r = CliRunner().invoke(command, ["--resume", str(run), "--steps", "3", "--device", "cpu", "--no-progress",
                                     "--override", "D.channel_base=32"])
    assert r.exit_code == 1 and "different model" in r.output and "Traceback" not in r.output


# ----------------------------------------------------------------------------------------------------------------------
# Pieces

def test_ema_and_metrics_hooks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ema_kimg=0 makes G_ema a copy of G; requested metrics run at each snapshot without moving the RNG stream."""
    import types

    calls = []

    def calc_metrics(names, G, dataset, device=None, progress=False):
        torch.randn(100)  # a metric that draws random numbers must not change training
        calls.append((tuple(names), type(G).__name__, len(dataset)))
        return [{"results": {name: 10.0 - len(calls)}, "metric": name} for name in names]

    def report_metric(record, run_dir):
        with open(Path(run_dir) / f"metric-{record['metric']}.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    fake = types.ModuleType("leangen.metrics.registry")
    fake.calc_metrics, fake.report_metric = calc_metrics, report_metric  # type: ignore[attr-defined]
    fake.plan_metrics = lambda *a, **k: []  # type: ignore[attr-defined]  # the loop's up-front check of the names
    fake.metric_info = lambda name: types.SimpleNamespace(higher_is_better=False)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "leangen.metrics.registry", fake)
    with_metrics = train(options(tmp_path / "m", steps=4, ema_kimg=0, metrics=["fid2k"]), random_images())
    assert calls == [(("fid2k",), "StyleGAN2Generator", 12)] * 2
    lines = (with_metrics.run_dir / "metric-fid2k.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[-1])["snapshot"].endswith("snapshot-000000-s000000004")
    # The snapshot's state includes its own evaluation: 8.0 (lower is better) is the best, at the last snapshot.
    best = ckpt.load_state(with_metrics.snapshot)["best_metric"]
    assert best["value"] == 8.0 and best["snapshot"] == with_metrics.snapshot.name and not best["higher_is_better"]
    G, G_ema = (leangen.load(with_metrics.run_dir, role=r) for r in ("G", "G_ema"))
    torch.testing.assert_close(G.state_dict(), G_ema.state_dict(), rtol=0, atol=0)
    without = train(options(tmp_path / "n", steps=4, ema_kimg=0), random_images())
    a, b = (load_file(str(r.snapshot / "D" / "model.safetensors")) for r in (with_metrics, without))
    assert not _tensors_equal(a, b)


def test_batch_stream_is_resumable_and_sharded() -> None:
    data = random_images(10)
    full = BatchStream(data, 4, seed=3, mirror=True)
    batches = [full.next_cpu().image for _ in range(8)]  # 32 samples over a 20-image (mirrored) index space
    later = BatchStream(data, 4, seed=3, mirror=True, position=12)
    for b in batches[3:]:
        assert torch.equal(later.next_cpu().image, b)
    # two ranks see disjoint halves of every epoch
    r0 = BatchStream(data, 2, seed=3, rank=0, world_size=2)
    r1 = BatchStream(data, 2, seed=3, rank=1, world_size=2)
    i0, i1 = set(r0._indices_at(0) + r0._indices_at(2)), set(r1._indices_at(0) + r1._indices_at(2))
    assert r0.shard_len == 5 and not i0 & i1 and len(i0 | i1) == 8
    x = BatchStream(data, 4).next().image_float
    assert x.dtype == torch.float32 and -1 <= x.min() and x.max() <= 1
    # worker processes deliver the same batches from the same position
    workers = BatchStream(data, 4, seed=3, mirror=True, workers=1, position=12)
    for b in batches[3:6]:
        assert torch.equal(workers.next_cpu().image, b)


def test_diffaugment_is_differentiable_and_seeded() -> None:
    assert parse_policy("none") == [] and parse_policy("color,cutout") == ["color", "cutout"]
    aug = DiffAugment("color,translation,cutout")
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    torch.manual_seed(0)
    y1 = aug(x)
    torch.manual_seed(0)
    y2 = aug(x)
    assert y1.shape == x.shape and torch.equal(y1, y2)
    y1.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_lazy_regularization_scaling_and_ema_half_life() -> None:
    p = [torch.nn.Parameter(torch.zeros(1))]
    opt = lazy_adam(p, 0.002, (0.0, 0.99), 16)
    c = 16 / 17
    assert math.isclose(opt.param_groups[0]["lr"], 0.002 * c) and math.isclose(opt.param_groups[0]["betas"][1],
                                                                                 0.99 ** c)
    # after ema_kimg thousand images the old weights count half
    beta = ema_beta(32, 10 ** 6, 10.0, None)
    assert math.isclose(beta ** (10_000 / 32), 0.5, rel_tol=1e-9)
    assert ema_beta(32, 0, 10.0, 0.05) < 1e-6  # ramp-up: the EMA starts as a copy


# ----------------------------------------------------------------------------------------------------------------------
# every GAN family trains through the same objective, with no special case in the trainer

@pytest.mark.parametrize("preset", [pytest.param("pixelfolder-tiny32", marks=pytest.mark.slow),  # 21-27 s
                                    "cips-tiny32"])
def test_pixel_synthesis_presets_train_and_resume(tmp_path: Path, preset: str) -> None:
    res = train(options(tmp_path, preset=preset, steps=3, overrides={}), random_images())
    assert res.status == "done" and res.step == 3
    assert (res.run_dir / "fakes_init.png").stat().st_size > 100
    G = leangen.load(res.run_dir)
    assert G.model_type == leangen.registry.get_preset(preset).components["G"][0]
    assert G.generate([0, 1], output_type="pt").shape == (2, 3, 32, 32)
    before = {k: v.clone() for k, v in G.state_dict().items()}
    res2 = train(options(tmp_path, preset=preset, steps=5, overrides={}, resume=str(res.run_dir)), random_images())
    assert res2.run_dir == res.run_dir and res2.step == 5
    after = leangen.load(res.run_dir).state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # training went on after resume


def test_time_budget_stops_with_a_snapshot_and_resume_continues(tmp_path: Path) -> None:
    # A budget of ~0 s: the first step already passes it, so the run stops after one step instead of 1000.
    res = train(options(tmp_path, steps=1000, minutes=1e-6), random_images())
    assert res.status == "done" and res.step == 1
    assert res.snapshot is not None and res.snapshot == ckpt.latest_snapshot(res.run_dir)
    assert "Time budget of 1e-06 min reached" in (res.run_dir / "log.txt").read_text()
    # The budget belongs to the invocation, not the run: resuming without it trains on to the target.
    more = train(TrainOptions(resume=str(res.run_dir), steps=3, device="cpu", progress=False), random_images())
    assert more.step == 3
