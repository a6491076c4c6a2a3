"""Quality for the same budget on openmoji-seg: the tiny ASAP-Net, pix2pixHD-style and SPADE presets each train on
the same number of images (``--kimg``; their preset recipe: L1 to the target, Adam 2e-3, batch 16; the wall time each
took is recorded), then are evaluated
on the fixed validation split: ``fid_pairs`` (TF-Inception FID of translations vs targets), ``miou`` /
``pixel_acc`` (palette classes recovered from the translations) and ``psnr``.

Usage::

    python benchmarks/translation_quality.py --kimg 1          # ~5-10 min on 2 CPU cores

Results: ``benchmarks/results/translation_quality-cpu.json`` and ``.md``. Tiny models, minutes of training: this
compares the architectures' early learning on one small task, not the paper's quality.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, fmt, md_table, write_results  # noqa: E402
from pixel_synthesis import machine_check  # noqa: E402

PRESETS = ["asapnet-tiny32", "pix2pixhd-tiny32", "spade-tiny32"]
METRICS = ["fid_pairs", "miou", "pixel_acc", "psnr"]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kimg", type=float, default=1.0)
    ap.add_argument("--data", default="openmoji-seg-32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--presets", nargs="+", default=PRESETS)
    args = ap.parse_args(argv)

    import leangen
    from leangen.metrics import calc_metrics
    from leangen.tasks import get_task
    from leangen.train import TrainOptions, train

    torch.set_num_threads(args.threads)
    dev = torch.device("cpu")
    payload: dict[str, Any] = dict(title="Translation quality for the same number of training images (openmoji-seg-32)",
                                   environment=environment(dev), kimg=args.kimg, data=args.data, rows=[])
    val = get_task("paired").open(args.data, 32).val
    with tempfile.TemporaryDirectory() as out:
        for preset in args.presets:
            gemm = machine_check(dev)
            t0 = time.time()
            res = train(TrainOptions(preset=preset, data=args.data, outdir=out, kimg=args.kimg,
                                     device="cpu", progress=False, metrics=[], grid=4, tick=4))
            model = leangen.load(res.run_dir)
            records = calc_metrics(METRICS, model, val, device="cpu", progress=False)
            row = dict(preset=preset, params=model.num_params(), train_s=round(time.time() - t0, 1),
                       kimg=res.cur_nimg / 1000, steps=res.step, gemm_ms=gemm,
                       **{r["metric"]: next(iter(r["results"].values())) for r in records},
                       num_val_pairs=records[0]["protocol"]["num_pairs"])
            payload["rows"].append(row)
            print(row, file=sys.stderr, flush=True)
            write_results("translation_quality", "cpu", payload, markdown(payload))
    print(markdown(payload))
    return payload


def markdown(payload: dict[str, Any]) -> str:
    env = payload["environment"]
    head = ["preset", "params", "kimg", "train time (s)", "fid_pairs", "mIoU", "pixel acc", "PSNR (dB)", "machine check (ms)"]
    rows = [[r["preset"], f"{r['params']:,}", fmt(r.get("kimg"), ".2f"), fmt(r["train_s"], ".0f"), fmt(r["fid_pairs"], ".1f"),
             fmt(r["miou"], ".3f"), fmt(r["pixel_acc"], ".3f"), fmt(r["psnr"], ".2f"), fmt(r["gemm_ms"], ".0f")]
            for r in payload["rows"]]
    return "\n".join([f"# {payload['title']}", "",
                      f"{env['device_name']}, torch {env['torch_version']}; {payload['kimg']} kimg of training per "
                      f"preset on {payload['data']} (preset recipe: L1, batch 16), metrics on the fixed validation "
                      f"split (FID: TF-Inception, StyleGAN protocol). {env['date']}.", "",
                      md_table(head, rows)])


if __name__ == "__main__":
    main()
