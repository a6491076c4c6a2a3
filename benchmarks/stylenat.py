"""StyleNAT vs StyleGAN2 vs PixelFolder at 256: parameters, executed GMACs, peak memory, latency and throughput.

The machinery of ``pixel_synthesis.py`` (one process, the models timed interleaved with ``leangen.profile``, a GEMM
machine check before and after each run); its options all work here. Ratios are StyleNAT ÷ each other model. The
official StyleNAT's CPU latency at 256, batch 1, 2 threads (6.4 s) is *quoted* from ``benchmarks/anchors.json``
(measured elsewhere on the official code, with NATTEN replaced by an exact PyTorch equivalent), not measured here.

Usage::

    python benchmarks/stylenat.py                       # CPU: 256 at batch 1 (add --runs 256:4 for batch 4)
    python benchmarks/stylenat.py --device cuda         # GPU: 256 at batch 1 and 32, fp32 and bf16

Results: ``benchmarks/results/stylenat-<device>.json`` and ``.md``.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pixel_synthesis  # noqa: E402

FAMILIES = ("stylenat", "stylegan2", "pixelfolder")  # StyleNAT first: ratios are StyleNAT ÷ the others


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """StyleNAT ÷ each other family, by parameters, MACs and throughput."""
    by_family = {r["family"]: r for r in rows}
    base = by_family.get(FAMILIES[0])
    if base is None:
        return []

    def div(a: Any, b: Any) -> float | None:
        return a / b if a is not None and b else None

    out = []
    for fam in FAMILIES[1:]:
        x = by_family.get(fam)
        if x is None:
            continue
        mac, speed = div(base["gmacs"], x["gmacs"]), div(base["throughput"], x["throughput"])
        out.append(dict(pair=f"{FAMILIES[0]} ÷ {fam}", macs_executed=mac,
                        macs_out_res=div(base["gmacs_out_res"], x["gmacs_out_res"]),
                        macs_paper=div(base.get("paper_gmacs"), x.get("paper_gmacs")),
                        params=div(base["params"], x["params"]), throughput=speed,
                        paper_throughput=div(base.get("paper_throughput"), x.get("paper_throughput")),
                        realised=speed * mac if speed is not None and mac is not None else None))
    return out


if __name__ == "__main__":
    pixel_synthesis.ratios = ratios  # main() and render() look the ratio function up at call time
    pixel_synthesis.CPU_RUNS = ["256:1:1:3"]
    pixel_synthesis.GPU_RUNS = ["256:1", "256:32"]
    pixel_synthesis.main(sys.argv[1:], default_name="stylenat", default_families=FAMILIES,
                         title="StyleNAT vs StyleGAN2 vs PixelFolder")
