"""Reliability: damaged models and snapshots, full disks, file modes, run-id races, torn stats, CLI error lines."""
from __future__ import annotations

import builtins
import errno
import json
import os
import pathlib
import stat
import threading
import warnings
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
from leangen.models.base import MODEL_TYPES, ModelLoadError, PretrainedModel
from leangen.registry import get_preset
from leangen.utils import files as files_mod

TINY_G = {"channel_base": 16, "max_channels": 16, "z_dim": 32, "w_dim": 32, "mapping_layers": 2}
TINY_ARGS = [f"--override=G.{k}={v}" for k, v in TINY_G.items()] + [
    "--override=D.channel_base=16", "--override=D.max_channels=16"]


def tiny_g(**kw: Any) -> PretrainedModel:
    model_type, kwargs = get_preset("stylegan2-tiny32").components["G"]
    return MODEL_TYPES[model_type](**{**kwargs, **TINY_G, **kw})


def edit_config(folder: Path, **changes: Any) -> None:
    meta = json.loads((folder / "config.json").read_text())
    meta["config"].update(changes)
    (folder / "config.json").write_text(json.dumps(meta))


def make_run(tmp_path: Path, n: int = 2, **save_kw: Any) -> tuple[Path, list[Path]]:
    """A run directory with ``n`` snapshots of a tiny G (steps 0..n-1)."""
    run = tmp_path / "runs" / "00000-tiny"
    run.mkdir(parents=True)
    G = tiny_g()
    snaps = [runs.save_snapshot(run, f"snapshot-{i:06d}", {"G_ema": G}, {"format": runs.STATE_FORMAT, "step": i},
                                **save_kw) for i in range(n)]
    return run, snaps


def flip_byte(path: Path, at: int = -10) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def run_cli(args: list[str]) -> Any:
    return CliRunner().invoke(cli, args, catch_exceptions=True)


def one_line_error(result: Any) -> str:
    """The ``Error: ...`` line of a failed command (and proof that it is one line, without a traceback)."""
    assert result.exit_code == 1, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [ln for ln in result.output.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


# ----------------------------------------------------------------------------------------------------------------------
# 1. Model folders whose config and weights disagree, or are damaged

def test_config_of_another_width_names_file_and_tensor(tmp_path: Path) -> None:
    tiny_g().save_pretrained(tmp_path / "g")
    edit_config(tmp_path / "g", max_channels=32, channel_base=32)
    with pytest.raises(ModelLoadError, match=r"model\.safetensors does not match its config: tensor '[\w.]+' has "
                                             r"shape \[.*16.*\], the config builds \[.*32.*\]"):
        leangen.load(tmp_path / "g")


def test_weights_of_another_family_name_the_first_foreign_tensor(tmp_path: Path) -> None:
    tiny_g().save_pretrained(tmp_path / "g")
    get_preset("stylegan2-tiny32").build("D").save_pretrained(tmp_path / "d")
    (tmp_path / "d" / "model.safetensors").write_bytes((tmp_path / "g" / "model.safetensors").read_bytes())
    with pytest.raises(ModelLoadError, match=r"tensor '[\w.]+' is not part of the StyleGAN2Discriminator"):
        PretrainedModel.from_pretrained(tmp_path / "d")


def test_unknown_config_argument(tmp_path: Path) -> None:
    tiny_g().save_pretrained(tmp_path / "g")
    edit_config(tmp_path / "g", foo=1)
    with pytest.raises(ModelLoadError, match=r"config\.json: unknown argument 'foo' for model type "
                                             r"'stylegan2-generator'"):
        leangen.load(tmp_path / "g")


@pytest.mark.parametrize("keep", [0, 5, 0.5])
def test_truncated_or_empty_weights(tmp_path: Path, keep: float) -> None:
    tiny_g().save_pretrained(tmp_path / "g")
    weights = tmp_path / "g" / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:int(len(data) * keep) if isinstance(keep, float) else keep])
    with pytest.raises(ModelLoadError, match="model.safetensors is truncated or not a safetensors file"):
        leangen.load(tmp_path / "g")


def test_resume_validates_weights_like_from_pretrained(tmp_path: Path) -> None:
    run, (snap,) = make_run(tmp_path, n=1)
    tiny_g(max_channels=8, channel_base=8).save_pretrained(tmp_path / "narrow")
    (snap / "G_ema" / "model.safetensors").write_bytes((tmp_path / "narrow" / "model.safetensors").read_bytes())
    runs._write_index(snap, None)  # checksums that match: shapes are still checked
    with pytest.raises(ModelLoadError, match="has shape"):
        runs.load_modules(snap, {"G_ema": tiny_g()})


# ----------------------------------------------------------------------------------------------------------------------
# 2. Snapshot checksums, verification, fallback to the newest intact snapshot

def test_index_lists_a_checksum_per_file_and_merges_extra_keys(tmp_path: Path) -> None:
    import hashlib

    _, (snap,) = make_run(tmp_path, n=1, index={"task": "gan", "files": "not mine", "modules": {"G_ema": "G"}})
    index = json.loads((snap / runs.INDEX_NAME).read_text())
    assert index["task"] == "gan" and index["modules"] == {"G_ema": "G"}
    on_disk = sorted(p.relative_to(snap).as_posix() for p in snap.rglob("*") if p.is_file())
    assert sorted(index["files"]) == [f for f in on_disk if f != runs.INDEX_NAME]
    assert {"training_state.pt", "G_ema/model.safetensors", "G_ema/config.json"} <= set(index["files"])
    for rel, digest in index["files"].items():
        assert hashlib.sha256((snap / rel).read_bytes()).hexdigest() == digest
    runs.verify_snapshot(snap)


@pytest.mark.parametrize("damaged", ["training_state.pt", "G_ema/model.safetensors"])
def test_damaged_file_is_named_before_anything_is_read(tmp_path: Path, damaged: str) -> None:
    _, (snap,) = make_run(tmp_path, n=1)
    flip_byte(snap / damaged)
    with pytest.raises(runs.CorruptSnapshotError, match=f"{damaged} is damaged"):
        runs.verify_snapshot(snap)
    load = (lambda: runs.load_state(snap)) if damaged.endswith(".pt") else (
        lambda: runs.load_modules(snap, {"G_ema": tiny_g()}))
    with pytest.raises(runs.CorruptSnapshotError, match=damaged):
        load()


@pytest.mark.parametrize("keep", [0, 0.5])
def test_truncated_training_state_is_one_clear_error(tmp_path: Path, keep: float) -> None:
    _, (snap,) = make_run(tmp_path, n=1)
    state = snap / runs.STATE_NAME
    state.write_bytes(state.read_bytes()[:int(state.stat().st_size * keep)])
    runs._write_index(snap, None)  # checksums of the truncated file: the read itself must fail cleanly
    with pytest.raises(runs.CorruptSnapshotError, match=r"training_state\.pt is truncated or damaged"):
        runs.load_state(snap)


def test_resume_falls_back_to_newest_intact_snapshot(tmp_path: Path) -> None:
    run, (old, new) = make_run(tmp_path, n=2)
    flip_byte(new / runs.STATE_NAME)
    snap, skipped = runs.newest_intact_snapshot(run)
    assert snap == old and [s for s, _ in skipped] == [new] and "training_state.pt is damaged" in skipped[0][1]
    for spec in (str(run), "latest"):
        with pytest.warns(runs.SkippedSnapshotWarning, match=f"resuming from {old.name}.*passed over {new.name}"):
            assert runs.resolve_resume(spec, tmp_path / "runs") == (run, old)
    with pytest.raises(runs.CorruptSnapshotError, match="training_state.pt is damaged"):
        runs.resolve_resume(str(new), tmp_path / "runs")  # named explicitly: never silently replaced
    flip_byte(old / "G_ema" / "config.json", at=5)
    with pytest.raises(runs.CorruptSnapshotError, match="no intact snapshot"):
        runs.resolve_resume(str(run), tmp_path / "runs")


def test_snapshot_without_index_is_refused(tmp_path: Path) -> None:
    """Unverifiable is not intact: a bit flip in such a snapshot would load silently (issue 19, item 8)."""
    run, (snap,) = make_run(tmp_path, n=1)
    (snap / "index.json").unlink(missing_ok=True)
    with pytest.raises(runs.CorruptSnapshotError, match="no index.json"):
        runs.resolve_resume(str(run), tmp_path)
    with pytest.raises(runs.CorruptSnapshotError, match="cannot be checked"):
        runs.load_state(snap)
    with pytest.raises(runs.CorruptSnapshotError, match="cannot be checked"):
        runs.load_modules(snap, {"G_ema": tiny_g()})
    assert runs.newest_intact_snapshot(run)[0] is None


# ----------------------------------------------------------------------------------------------------------------------
# 3. A full disk while writing a snapshot (torch.save reports ENOSPC as RuntimeError; safetensors may not at all)

@pytest.mark.parametrize("fills", ["training_state.pt", "model.safetensors"])
def test_disk_full_at_file_write_level_is_a_snapshot_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           fills: str) -> None:
    run, (first,) = make_run(tmp_path, n=1)

    class FullDisk:
        """A real file that takes 64 bytes, then fails like a full disk."""

        def __init__(self, f: Any) -> None:
            self.f, self.room = f, 64

        def write(self, data: Any) -> int:
            n = len(memoryview(data).cast("B"))
            if n > self.room:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.room -= n
            return self.f.write(data)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.f, name)

        def __enter__(self) -> "FullDisk":
            return self

        def __exit__(self, *exc: Any) -> None:
            self.f.close()

    def full_open(file: Any, mode: str = "r", *args: Any, **kw: Any) -> Any:
        f = builtins.open(file, mode, *args, **kw)
        return FullDisk(f) if "w" in mode and fills in str(file) else f

    for module in (runs, files_mod):  # wherever the snapshot's files are opened
        monkeypatch.setattr(module, "open", full_open, raising=False)
    with pytest.raises(runs.SnapshotError, match="no space left on device") as info:
        runs.save_snapshot(run, "snapshot-000001", {"G_ema": tiny_g()}, {"format": runs.STATE_FORMAT, "step": 1})
    assert f"previous snapshot {first} is intact" in str(info.value)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["snapshot-000000"]


# ----------------------------------------------------------------------------------------------------------------------
# 4. File modes, 5. superseded snapshots, 6. run ids

def test_atomic_files_get_the_mode_the_umask_gives(tmp_path: Path) -> None:
    for umask, mode in ((0o022, 0o644), (0o077, 0o600), (0o002, 0o664)):
        folder = tmp_path / f"{umask:03o}"
        old = os.umask(umask)
        try:
            files_mod.write_json_atomic(folder / "a.json", {"x": 1})
            tiny_g().save_pretrained(folder / "g")
        finally:
            os.umask(old)
        for path in (folder / "a.json", folder / "g" / "model.safetensors", folder / "g" / "config.json"):
            assert stat.S_IMODE(path.stat().st_mode) == mode, (oct(umask), path)


def test_prune_bounds_superseded_snapshots(tmp_path: Path) -> None:
    ckpt = tmp_path / "checkpoints"
    for name in ["snapshot-000001", "snapshot-000002", "snapshot-000003",
                 "superseded-snapshot-000004", "superseded-snapshot-000005-s000000042", "superseded-snapshot-000006",
                 "superseded-notes"]:
        (ckpt / name).mkdir(parents=True)
        (ckpt / name / runs.STATE_NAME).write_bytes(b"x")
    removed = runs.prune_snapshots(tmp_path, keep=2)
    assert sorted(p.name for p in removed) == ["snapshot-000001", "superseded-snapshot-000004"]
    assert sorted(p.name for p in ckpt.iterdir()) == [
        "snapshot-000002", "snapshot-000003", "superseded-notes", "superseded-snapshot-000005-s000000042",
        "superseded-snapshot-000006"]


def test_runs_started_together_get_distinct_ids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every thread scans the empty outdir before any of them creates its run folder: the worst interleaving.
    n = 8
    barrier = threading.Barrier(n, timeout=10)
    first_scan = threading.local()
    real_iterdir = pathlib.Path.iterdir

    def iterdir(self: Path) -> Any:
        entries = list(real_iterdir(self))
        if self == tmp_path and not getattr(first_scan, "done", False):
            first_scan.done = True
            barrier.wait()
        return iter(entries)

    monkeypatch.setattr(pathlib.Path, "iterdir", iterdir)
    made: list[Path] = []
    threads = [threading.Thread(target=lambda i=i: made.append(runs.new_run_dir(tmp_path, f"preset{i}")))
               for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = sorted(runs.run_id(p) for p in made)
    assert ids == list(range(n)), [p.name for p in made]
    assert sorted(p.name for p in real_iterdir(tmp_path)) == sorted(p.name for p in made)  # no claims left behind


# ----------------------------------------------------------------------------------------------------------------------
# 7. stats.jsonl with a torn last line

def test_torn_last_stats_line_is_dropped_and_cut(tmp_path: Path) -> None:
    from leangen.train.report import Reporter

    stats = tmp_path / "stats.jsonl"
    stats.write_text('{"tick": 0, "kimg": 0.0, "step": 0}\n{"tick": 1, "kimg": 0.1, "step": 2}\n{"tick": 2, "ki')
    rep = Reporter(tmp_path, progress=False)
    try:
        assert [r["tick"] for r in rep.history] == [0, 1]
        rep.write_stats({"tick": 2, "kimg": 0.2, "step": 4})
    finally:
        rep.close()
    assert [json.loads(line)["tick"] for line in stats.read_text().splitlines()] == [0, 1, 2]
    assert "dropped the half-written last line" in (tmp_path / "log.txt").read_text()


def test_bad_stats_line_in_the_middle_is_a_clear_error(tmp_path: Path) -> None:
    from leangen.train.report import read_stats

    stats = tmp_path / "stats.jsonl"
    stats.write_text('{"tick": 0}\n{"tick": 1, "k\n{"tick": 2}\n')
    with pytest.raises(ValueError, match=r"stats\.jsonl: line 2 is not valid JSON"):
        read_stats(stats)
    stats.write_text('{"tick": 0}\n{"tick": 1}')  # complete row, newline lost: kept, and the line is finished
    assert read_stats(stats) == ([{"tick": 0}, {"tick": 1}], None)
    assert stats.read_text().endswith('{"tick": 1}\n')


# ----------------------------------------------------------------------------------------------------------------------
# 8./9. The CLI: one line per error the user can act on; absurd sizes refused before allocating

def test_cli_damaged_model_is_one_line(tmp_path: Path) -> None:
    tiny_g().save_pretrained(tmp_path / "g")
    (tmp_path / "g" / "model.safetensors").write_bytes(b"")
    line = one_line_error(run_cli(["generate", "--network", str(tmp_path / "g"), "--outdir", str(tmp_path / "out")]))
    assert "model.safetensors is truncated or not a safetensors file" in line


def test_cli_generate_disk_full_says_what_was_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_save = Image.Image.save
    calls = {"n": 0}

    def save(self: Image.Image, fp: Any, *args: Any, **kw: Any) -> None:
        calls["n"] += 1
        if calls["n"] > 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_save(self, fp, *args, **kw)

    monkeypatch.setattr(Image.Image, "save", save)
    out = tmp_path / "out"
    line = one_line_error(run_cli(["generate", "--network", "stylegan2-tiny32", "--seeds", "0-5", "--batch", "2",
                                   "--outdir", str(out), "--device", "cpu"]))
    assert "no space left on device" in line and f"Images written before the error stay in {out}" in line
    assert sorted(p.name for p in out.iterdir()) == ["seed0000.png", "seed0001.png"]


def _read_only(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    """Make ``root`` behave as a read-only folder (tests may run as root, which ignores permission bits)."""
    root.mkdir()
    real_mkdir, real_save = pathlib.Path.mkdir, Image.Image.save

    def denied(path: Any) -> None:
        if Path(path).is_relative_to(root) and Path(path) != root:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    def mkdir(self: Path, *args: Any, **kw: Any) -> None:
        denied(self)
        real_mkdir(self, *args, **kw)

    def save(self: Image.Image, fp: Any, *args: Any, **kw: Any) -> None:
        denied(fp)
        real_save(self, fp, *args, **kw)

    monkeypatch.setattr(pathlib.Path, "mkdir", mkdir)
    monkeypatch.setattr(Image.Image, "save", save)


def test_cli_read_only_output_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "imgs"
    data.mkdir()
    for i in range(4):
        Image.fromarray(np.full((32, 32, 3), i * 40, np.uint8)).save(data / f"{i}.png")
    ro = tmp_path / "ro"
    _read_only(monkeypatch, ro)
    line = one_line_error(run_cli(["generate", "--network", "stylegan2-tiny32", "--seeds", "0", "--outdir", str(ro),
                                   "--device", "cpu"]))
    assert line.startswith(f"Error: permission denied ({ro / 'seed0000.png'})")
    line = one_line_error(run_cli(["train", "--preset", "stylegan2-tiny32", "--data", str(data), "--outdir",
                                   str(ro / "runs"), "--steps", "1", "--batch", "4", "--device", "cpu",
                                   "--no-progress", *TINY_ARGS]))
    assert line.startswith(f"Error: permission denied ({ro / 'runs'})")


def test_cli_absurd_seed_lists_are_refused_before_allocating(tmp_path: Path) -> None:
    for seeds, why in (("-3", "bad seed -3"), ("0-2000000", "at most 1,000,000"),
                       ("0-100000000", "100,000,001 seeds: at most 1,000,000")):
        line = one_line_error(run_cli(["generate", "--network", str(tmp_path / "nothing"), "--seeds", seeds,
                                       "--outdir", str(tmp_path / "out")]))
        assert why in line, line
    with pytest.raises(ValueError, match="bad seed -1"):
        tiny_g().generate([-1])


def test_cli_absurd_resolution_is_refused_before_allocating(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from leangen.data import create as create_mod

    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src / "a.png")

    def never(*args: Any, **kw: Any) -> None:  # the old behaviour: a 30 GB image, then MemoryError
        raise AssertionError("tried to render the image")

    monkeypatch.setattr(create_mod, "crop_resize", never)
    line = one_line_error(run_cli(["dataset", "create", "--source", str(src), "--dest", str(tmp_path / "d.zip"),
                                   "--resolution", "100000"]))
    assert "resolution 100000 is too large" in line and "30.0 GB" in line


def test_cli_memory_error_is_one_line_and_bugs_keep_their_traceback(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from leangen.data import create as create_mod

    def oom(*args: Any, **kw: Any) -> None:
        raise MemoryError()

    monkeypatch.setattr(create_mod, "create_dataset", oom)
    args = ["dataset", "create", "--source", "openmoji", "--dest", str(tmp_path / "d.zip"), "--resolution", "64"]
    assert "out of memory (allocation failed)" in one_line_error(run_cli(args))
    monkeypatch.setattr(create_mod, "create_dataset", lambda *a, **k: 1 / 0)
    result = run_cli(args)
    assert isinstance(result.exception, ZeroDivisionError)  # a bug is not dressed up as a user error


def test_describe_error_covers_leangen_errors_and_os_errors() -> None:
    from leangen.cli.common import describe_error

    assert describe_error(ModelLoadError("x.safetensors: bad\nmore")) == "x.safetensors: bad"
    assert describe_error(runs.CorruptSnapshotError("s/training_state.pt is damaged")) == \
        "s/training_state.pt is damaged"
    assert describe_error(OSError(errno.EROFS, "Read-only file system", "/x")).startswith("read-only file system (/x)")
    assert describe_error(OSError(errno.EDQUOT, "Disk quota exceeded")).startswith("disk quota exceeded")
    assert describe_error(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried")).startswith(
        "out of memory")
    assert describe_error(OSError(errno.ENOENT, "No such file")) is None
    assert describe_error(RuntimeError("shape mismatch")) is None
