"""Train the model zoo on the built-in data and write each entry into ``src/leangen/zoo/weights/<name>/``.

Every entry is one ``leangen train`` (or ``leangen compress``) run with a fixed kimg budget per comparison group, so
models that are compared got the same number of training images on the same device; wall time, device and thread
count go into the entry's ``card.json`` with its metrics (named protocol, validation split) and the exact command.
Runs live under ``--runs`` and resume where they stopped: rerunning this script continues an interrupted entry.

    python benchmarks/zoo.py                          # every entry (CPU: about 2 hours on one core)
    python benchmarks/zoo.py --only spn-openmoji32 ar-openmoji32
    python benchmarks/zoo.py --groups likelihood-32 --force
    python benchmarks/zoo.py --device cuda --scale 10 # a GPU: ten times the kimg of every entry

An entry is written only when its training and metrics finished; ``benchmarks/quality.py`` turns the cards into the
comparison table.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = ROOT / "src" / "leangen" / "zoo" / "weights"


@dataclass(frozen=True)
class Entry:
    """One zoo model: what trains it, on what, for how long, and what measures it."""

    name: str
    preset: str
    data: str
    group: str
    kimg: float
    metrics: tuple[str, ...]
    teacher: str | None = None  # a zoo entry this one is compressed from (``leangen compress``)
    train_args: tuple[str, ...] = field(default_factory=tuple)


GAN_METRICS = ("fid500", "kid500")  # 500 generated vs all real images (StyleGAN protocol)
PAIRED_METRICS = ("fid_pairs", "psnr", "l1")  # on every validation pair
# The tiny translator presets train with L1 only; the papers train with the GAN and feature matching on.
GAN_ON = ("--hparam", "gan_weight=1")
ENTRIES: list[Entry] = [
    # PixelFolder (ECCV 2022) Table 1: PixelFolder <= StyleGAN2 < CIPS; StyleNAT <= StyleGAN2. Equal kimg.
    Entry("pixelfolder-openmoji32", "pixelfolder-tiny32", "openmoji-32", "unconditional-32", 40, GAN_METRICS),
    Entry("stylegan2-openmoji32", "stylegan2-tiny32", "openmoji-32", "unconditional-32", 40, GAN_METRICS),
    Entry("cips-openmoji32", "cips-tiny32", "openmoji-32", "unconditional-32", 40, GAN_METRICS),
    Entry("stylenat-openmoji32", "stylenat-tiny32", "openmoji-32", "unconditional-32", 40, GAN_METRICS),
    # SPN vs a full-image autoregressive decoder, bits/dim on the validation split. Equal kimg.
    Entry("spn-openmoji32", "spn-tiny-32", "openmoji-32", "likelihood-32", 30, ("bpd",)),
    Entry("ar-openmoji32", "ar-tiny-32", "openmoji-32", "likelihood-32", 30, ("bpd",)),
    # ASAP-Net vs pix2pixHD-style and SPADE on label maps -> glyphs. Equal kimg.
    Entry("asapnet-openmojiseg32", "asapnet-tiny32", "openmoji-seg-32", "paired-32", 40, PAIRED_METRICS,
          train_args=GAN_ON),
    Entry("pix2pixhd-openmojiseg32", "pix2pixhd-tiny32", "openmoji-seg-32", "paired-32", 40, PAIRED_METRICS,
          train_args=GAN_ON),
    Entry("spade-openmojiseg32", "spade-tiny32", "openmoji-seg-32", "paired-32", 40, PAIRED_METRICS,
          train_args=GAN_ON),
    # The device-efficient pipeline on the zoo's ASAP-Net: condense, prune, distill.
    Entry("asapnet-openmojiseg32-student", "asapnet-tiny32", "openmoji-seg-32", "compressed-32", 0, PAIRED_METRICS,
          teacher="asapnet-openmojiseg32",
          train_args=("--condense-steps", "600", "--distill-steps", "1500", "--metrics",
                      "psnr", "--threads", "1", "--repeats", "3")),
    # Unpaired translation; no metric is defined for it yet (samples only).
    Entry("cyclegan-faces2animals32", "cyclegan-tiny32", "openmoji-faces2animals-32", "unpaired-32", 4, ()),
]


def leangen_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "leangen", *args]


def run_dir_of(outdir: Path) -> Path | None:
    runs = sorted(p for p in outdir.glob("*") if (p / "training_options.json").is_file()) if outdir.is_dir() else []
    return runs[-1] if runs else None


def train(entry: Entry, runs_root: Path, device: str, scale: float) -> tuple[Path, list[str], float]:
    """Run (or resume) the training of ``entry``; returns its run directory, the command and the seconds it took."""
    outdir = runs_root / entry.name
    if entry.teacher is not None:
        teacher_run = run_dir_of(runs_root / entry.teacher)
        if teacher_run is None:
            raise RuntimeError(f"{entry.name}: its teacher {entry.teacher} has not been trained")
        cmd = leangen_cmd("compress", "--network", str(teacher_run), "--data", entry.data, "--outdir", str(outdir),
                          "--device", device, *entry.train_args)
        done = (outdir / "student").is_dir()
    else:
        kimg = f"{entry.kimg * scale:g}"
        fresh = leangen_cmd("train", "--preset", entry.preset, "--data", entry.data, "--outdir", str(outdir),
                            "--kimg", kimg, "--seed", "0", "--tick", "4", "--snap", "5", "--keep", "1",
                            "--metrics", "none", "--device", device, *entry.train_args)
        existing = run_dir_of(outdir)
        cmd = fresh if existing is None else leangen_cmd("train", "--resume", str(existing), "--kimg", kimg,
                                                         "--device", device)
        done = False
    t0 = time.perf_counter()
    if not done:
        print("$", shlex.join(["leangen", *cmd[3:]]), flush=True)
        subprocess.run(cmd, check=True, cwd=ROOT)
    if entry.teacher is None:
        cmd = fresh  # the card names the command that reproduces the run, not the resume that finished it
    seconds = time.perf_counter() - t0
    source = outdir / "student" if entry.teacher else run_dir_of(outdir)
    assert source is not None
    return source, cmd, seconds


def last_stats(run: Path) -> dict[str, Any]:
    """The last line of the run's ``stats.jsonl`` (``{}`` without one: compress runs)."""
    stats = run / "stats.jsonl"
    lines = stats.read_text().splitlines() if stats.is_file() else []
    lines = [ln for ln in lines if ln.strip()]
    return json.loads(lines[-1]) if lines else {}


def training_seconds(run: Path, fallback: float) -> float:
    """Wall seconds of training the run's own log recorded (across resumes, metrics excluded), else ``fallback``."""
    total = last_stats(run).get("total_sec")
    return float(total) if total is not None else fallback


def sample_grid(model: Any, dataset: Any, path: Path) -> None:
    """Generators and likelihood models: 64 (16) samples from seeds 0..; translators: target | output pairs."""
    import numpy as np
    from PIL import Image

    from leangen.models.images import image_grid

    kind = getattr(model, "kind", "")
    if kind == "translator":
        items = [dataset[i] for i in range(min(16, len(dataset)))]
        paired = "condition" in items[0]  # unpaired items: an A image (the input) and a B image (no target)
        cond = torch.stack([torch.as_tensor(it["condition" if paired else "image"]) for it in items])
        target = torch.stack([torch.as_tensor(it["image"]) for it in items])
        target = target.float() / 127.5 - 1 if target.dtype == torch.uint8 else target.float()
        out = model.translate(cond, output_type="pt").cpu().float()
        pairs = torch.stack([target, out], dim=1).flatten(0, 1)
        grid = image_grid(pairs, ncols=8)
    else:
        n = 16 if kind == "likelihood" else 64
        seeds = range(n)
        imgs = model.generate(seeds=seeds, output_type="pt")
        grid = image_grid(imgs.cpu().float(), ncols=8)
    Image.fromarray(np.asarray(grid)).save(path)


def write_entry(entry: Entry, source: Path, cmd: list[str], seconds: float, device: str, scale: float,
                weights_root: Path = WEIGHTS, with_metrics: bool = True) -> dict[str, Any]:
    import leangen
    from leangen.metrics.registry import calc_metrics
    from leangen.presets import get_preset
    from leangen.profile import device_name
    from leangen.tasks import open_eval_data

    model = leangen.load(source, device=device)
    dest = weights_root / entry.name
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(tmp)
    records: list[dict[str, Any]] = []
    metrics: dict[str, float] = {}
    data = open_eval_data(entry.data, model)  # the task's metric split: all reals for generators, else validation
    if entry.metrics and with_metrics:
        where = str(source.relative_to(ROOT)) if source.is_relative_to(ROOT) else str(source)  # cards ship
        records = calc_metrics(list(entry.metrics), model, data, device=device, snapshot=where)
        for rec in records:
            metrics.update({k: float(v) for k, v in rec["results"].items()})
    sample_grid(model, data, tmp / "samples.png")
    run = source.parent if entry.teacher else source
    opts = json.loads((run / "training_options.json").read_text()) if (run / "training_options.json").is_file() else {}
    weights = (tmp / "model.safetensors").read_bytes()
    card = {
        "name": entry.name, "preset": entry.preset, "family": get_preset(entry.preset).family,
        "task": {"generator": "unconditional", "likelihood": "likelihood"}.get(model.kind,
                                                                              "paired" if "seg" in entry.data
                                                                              else "unpaired"),
        "data": entry.data, "group": entry.group,
        "metrics": metrics, "metric_records": records,
        "training": {"kimg": entry.kimg * scale if not entry.teacher else None,
                     "steps": last_stats(run).get("step"),
                     "seconds": round(training_seconds(run, seconds), 1), "device": device,
                     "device_name": device_name(torch.device(device)), "threads": torch.get_num_threads(),
                     "torch": torch.__version__, "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
                     "batch": opts.get("batch"), "seed": 0},
        "command": f"python benchmarks/zoo.py --only {entry.name}",
        "train_command": shlex.join(["leangen", *cmd[3:]]).replace(f"{ROOT}/", ""),  # paths relative to the repo
        "teacher": entry.teacher, "sha256": hashlib.sha256(weights).hexdigest(),
        "params": sum(p.numel() for p in model.parameters()),
    }
    (tmp / "card.json").write_text(json.dumps(card, indent=1, default=str) + "\n")
    if dest.exists():
        import shutil

        shutil.rmtree(dest)
    tmp.rename(dest)
    return card


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", default=None, help="entry names")
    ap.add_argument("--groups", nargs="+", default=None, help="comparison groups (e.g. unconditional-32)")
    ap.add_argument("--runs", default="zoo-runs", help="where the training runs go (resumable)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every entry's kimg (longer runs on a GPU)")
    ap.add_argument("--weights", default=str(WEIGHTS), help="where entries are written")
    ap.add_argument("--no-metrics", action="store_true", help="skip the metrics (a quick check of the driver)")
    ap.add_argument("--force", action="store_true", help="rewrite entries that already have a card")
    args = ap.parse_args(argv)
    entries = [e for e in ENTRIES if (args.only is None or e.name in args.only)
               and (args.groups is None or e.group in args.groups)]
    if not entries:
        ap.error(f"no entry matches; entries: {', '.join(e.name for e in ENTRIES)}")
    runs_root = Path(args.runs).resolve()
    failed = []
    for entry in entries:
        if (Path(args.weights) / entry.name / "card.json").is_file() and not args.force:
            print(f"{entry.name}: already in the zoo (--force rewrites it)", flush=True)
            continue
        try:
            source, cmd, seconds = train(entry, runs_root, args.device, args.scale)
            card = write_entry(entry, source, cmd, seconds, args.device, args.scale, Path(args.weights),
                               with_metrics=not args.no_metrics)
            print(f"{entry.name}: {card['metrics']} in {card['training']['seconds']:.0f} s", flush=True)
        except Exception as e:  # one failed entry must not cost the others their run
            failed.append(entry.name)
            print(f"{entry.name}: FAILED: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
