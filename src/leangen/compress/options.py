"""What ``leangen compress`` accepts, in a module of its own so the option checks (``leangen.compress.checks``) and the
pipeline both import it without importing each other."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STEPS = ("condense", "prune", "distill", "deploy")


@dataclass
class CompressOptions:
    """What ``leangen compress`` accepts (see ``leangen compress --help``)."""

    teacher: str                           # trained run (or snapshot) of a prunable translator (leangen.ops.prunable)
    data: str                              # paired dataset, e.g. openmoji-seg-32-n64
    outdir: str
    preset: str | None = None              # the teacher's preset; default: read from its run
    condense_steps: int = 200
    sparsity: float = 1.0                  # group-lasso λ (proximal threshold = lr * λ per step)
    sparsity_ramp: int = 50                # steps of the linear ramp of λ
    threshold: float = 1e-4                # prune channels with ||(γ, β)|| at or below this ...
    macs_budget: float | None = None       # ... or prune to this many GMACs per image (binary search)
    target_fps: float | None = None        # ... or to this measured speed on ``runtime`` (leangen.compress.latency)
    target_ms: float | None = None         # ... or this measured latency per image
    runtime: str = "onnxruntime"           # where a latency target is measured: onnxruntime, torch (eager), cuda
    target_resolution: int | None = None   # time the latency target at this size (default: the teacher's own)
    width_search: str = "uniform"          # latency target: one width multiplier, a per-group "table", "threshold"
    latency_margin: float = 0.0            # search for the target less this fraction (headroom for a busier machine)
    widths: list[int] | None = None        # ... or prune to exactly these widths (top-scoring channels per group)
    min_channels: int = 1
    distill_steps: int = 200               # with distill_eval_every: the most steps distillation may take
    distill_eval_every: int | None = None  # evaluate the student every this many steps; keep the best (compress.stopping)
    quality_target: float | None = None    # ... stop once within this ratio of the teacher's metric (1.10: 10% worse)
    patience: int | None = None            # ... or after this many evaluations without a new best
    batch: int | None = None
    metric: str = "psnr"                   # a paired metric of the registry (psnr, l1, fid_pairs<N>)
    threads: list[int] = field(default_factory=lambda: [1, 2])
    repeats: int = 5
    compile: bool = True                   # also time torch.compile (reported unavailable where it fails)
    compile_backend: str = "inductor"
    onnx: bool = True
    device: str = "cpu"
    overwrite: bool = False                # other options than the folder was started with: start afresh
    redo: str | None = None                # remove this step's results and the later ones' (prune, distill, deploy)
    hparams: dict[str, dict[str, Any]] = field(default_factory=dict)  # per step: extra objective hyper-parameters
