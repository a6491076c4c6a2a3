"""StyleGAN2 alone at 256/512/1024: params, executed GMACs beside the paper-convention GMACs, memory and speed.

The same machinery as ``pixel_synthesis.py`` with ``--families stylegan2``; any of its options works here::

    python benchmarks/profile_stylegan2.py                      # CPU: 256, 512, 1024 at batch 1
    python benchmarks/profile_stylegan2.py --device cuda --runs 256:1 256:32 1024:8

Equivalent by hand: ``leangen profile stylegan2-256 stylegan2-512 stylegan2-1024 --device cpu --threads 2``
(that command interleaves the three resolutions in one run instead).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pixel_synthesis  # noqa: E402

if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--runs" not in argv:
        argv += ["--runs", "256:1", "512:1", "1024:1:1:3"]
    pixel_synthesis.main(argv, default_name="profile_stylegan2", default_families=("stylegan2",),
                         title="StyleGAN2: executed vs paper-convention GMACs, memory and speed")
