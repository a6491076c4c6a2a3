"""Training options: what the user asked for, and how it is resolved against the preset and a resumed run.

``TrainOptions`` fields left at ``None`` are *unset*. ``resolve_options`` fills them, highest priority first, from
(1) what the caller set, (2) the resolved options of the run being resumed (``training_options.json``),
(3) the preset's ``training`` defaults, (4) the defaults below. Objective hyper-parameters (learning rate, R1 gamma,
...) live in ``hparams`` and are resolved the same way against the objective's own defaults.
"""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Loop-level defaults (objective hyper-parameters have theirs in the objective class).
DEFAULTS: dict[str, Any] = {
    "outdir": "runs",
    "kimg": 25000.0,      # StyleGAN's default length; tiny CPU runs pass --kimg or stop with Ctrl-C
    "batch": 32,
    "ema_kimg": 10.0,
    "ema_rampup": None,
    "mirror": False,
    "tick": 4.0,
    "snap": 10,
    "keep": 3,
    "metrics": [],
    "seed": 0,
    "amp": False,
    "workers": 0,         # datasets up to 1 GB are decoded into memory once; workers only help beyond that
    "grid": 64,
}
# Preset ``training`` keys that configure the loop; every other key is an objective hyper-parameter.
LOOP_KEYS = tuple(DEFAULTS) + ("steps",)


@dataclass
class TrainOptions:
    """Everything ``leangen train`` accepts. ``None`` means "not set": filled by ``resolve_options``."""

    preset: str | None = None            # model preset name (``leangen models``)
    data: str | None = None              # dataset: zip, folder or built-in name (``openmoji``); stored resolved
    data_arg: str | None = None          # ``data`` as the user wrote it (a relative path stays readable)
    outdir: str | None = None            # parent of run directories
    kimg: float | None = None            # training length in thousands of real images shown
    steps: int | None = None             # ... or in optimizer steps (exclusive with kimg)
    minutes: float | None = None         # wall-clock budget of this invocation: stop (with a snapshot) when spent
    batch: int | None = None             # total batch over all processes
    ema_kimg: float | None = None        # generator EMA half-life in kimg
    ema_rampup: float | None = None      # EMA half-life <= cur_nimg * ema_rampup early on (None or 0: off)
    mirror: bool | None = None           # random x-flips of the training images
    tick: float | None = None            # kimg per tick (progress line, stats.jsonl, curves.png)
    snap: int | None = None              # ticks per snapshot (+ sample grid and metrics)
    keep: int | None = None              # keep the last N snapshots
    metrics: list[str] | None = None     # metrics at every snapshot (``fid2k``...); [] for none
    seed: int | None = None              # global seed (models, data order, latents)
    resume: str | None = None            # RUN_DIR, SNAPSHOT_DIR or "latest" (newest run in outdir)
    amp: bool | None = None              # bf16 autocast (the older spelling of precision="bf16")
    precision: str | None = None         # fp32 | bf16 | fp16 (autocast; fp16 with a gradient scaler)
    workers: int | None = None           # DataLoader worker processes (0: load in the training process)
    grid: int | None = None              # images per sample grid
    device: str = "auto"                 # auto | cpu | cuda[:i] (torchrun: cuda:LOCAL_RANK)
    deterministic: bool = False          # reproducible GPU kernels, TF32 off (see leangen.execution)
    tf32: bool | None = None             # TF32 on CUDA (default: on unless deterministic)
    progress: bool = True                # progress bar (only on a TTY)
    hparams: dict[str, Any] = field(default_factory=dict)      # objective hyper-parameters (lr, r1_gamma, ...)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # component -> constructor kwargs

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))


# Fields that describe this invocation rather than the run; never taken from a resumed run.
_RUNTIME_FIELDS = ("resume", "device", "progress", "minutes", "deterministic", "tf32")


def read_run_options(run_dir: Path) -> dict[str, Any]:
    """The ``TrainOptions`` fields stored in ``run_dir/training_options.json`` ({} when absent)."""
    path = Path(run_dir) / "training_options.json"
    if not path.is_file():
        return {}
    doc = json.loads(path.read_text())
    names = {f.name for f in dataclasses.fields(TrainOptions)}
    return {k: v for k, v in doc.items() if k in names}


def resolve_options(opts: TrainOptions, stored: dict[str, Any] | None = None) -> TrainOptions:
    """Return a copy of ``opts`` with every field set; ``ValueError`` on inconsistent or unknown values.

    ``stored`` is the resolved options of a run being resumed (``read_run_options``).
    """
    from leangen.presets import get_preset
    from leangen.train.objective import get_objective

    stored = dict(stored or {})
    for k in _RUNTIME_FIELDS:
        stored.pop(k, None)
    if opts.kimg is not None and opts.steps is not None:
        raise ValueError("give either --kimg or --steps, not both")
    if opts.kimg is not None or opts.steps is not None:
        stored.pop("kimg", None)  # a new length replaces the stored one, whichever unit it had
        stored.pop("steps", None)

    out = dataclasses.replace(opts)
    preset_name = opts.preset or stored.get("preset")
    if preset_name is None:
        raise ValueError("--preset is required (unless resuming a run that recorded one)")
    if opts.preset and stored.get("preset") and opts.preset != stored["preset"]:
        raise ValueError(f"cannot resume: the run was trained with preset {stored['preset']!r}, "
                         f"not {opts.preset!r}; resume without --preset or start a new run")
    try:
        preset = get_preset(preset_name)
    except KeyError as e:
        raise ValueError(e.args[0]) from None
    out.preset = preset_name
    out.data = opts.data or stored.get("data")
    if out.data is None:
        raise ValueError("--data is required (a dataset zip, an image folder or a built-in name such as openmoji)")
    if opts.data:
        # A path is stored absolute, so resuming from another working directory finds the data again.
        out.data_arg = opts.data
        path = Path(opts.data).expanduser()
        if path.exists():
            out.data = str(path.resolve())
    else:
        out.data_arg = stored.get("data_arg") or out.data

    from leangen.tasks import get_task

    training = dict(preset.training)
    task_defaults = {"metrics": list(get_task(preset.task).default_metrics)}
    for name in DEFAULTS:
        if getattr(out, name) is not None:
            continue
        if name in stored and (name != "kimg" or stored.get("steps") is None):
            value = stored[name]
        elif name in training:
            value = training[name]
        elif name in task_defaults:
            value = task_defaults[name]
        else:
            value = DEFAULTS[name]
        setattr(out, name, value)
    if out.steps is None and opts.kimg is None and stored.get("steps") is not None:
        out.steps = int(stored["steps"])
    if out.steps is not None:
        out.kimg = None
    out.metrics = _parse_metrics(out.metrics)
    # precision: the caller's, else --amp (its older spelling), else the resumed run's, else fp32.
    if opts.precision is None and opts.amp is None:
        out.precision = stored.get("precision") or ("bf16" if stored.get("amp") else "fp32")
    elif opts.precision is None:
        out.precision = "bf16" if opts.amp else "fp32"
    if out.precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"unknown precision {out.precision!r}; expected fp32, bf16 or fp16")
    out.amp = out.precision != "fp32"

    # Objective hyper-parameters: objective defaults <- preset <- stored run <- caller.
    objective = get_objective(preset.objective)
    known = dict(objective.hparams)
    hp = dict(known)
    for source, where in ((training, f"preset {preset_name!r}"), (stored.get("hparams") or {}, "the resumed run"),
                          (opts.hparams, "the options")):
        for k, v in source.items():
            if k in LOOP_KEYS and source is training:
                continue
            if k in LOOP_KEYS:
                raise ValueError(f"{k!r} in {where} is a training-loop option, not an objective hyper-parameter; "
                                 f"use --{k.replace('_', '-')}")
            if k not in known:
                raise ValueError(f"unknown {objective.name} hyper-parameter {k!r} in {where} "
                                 f"(known: {', '.join(sorted(known))})")
            hp[k] = v
    out.hparams = json.loads(json.dumps(hp))  # tuples -> lists, as they will read back from JSON

    # Overrides merge per component: "--override G.channel_base=32" on resume changes only that argument.
    overrides = {role: dict(kw) for role, kw in (stored.get("overrides") or {}).items()}
    for role, kw in (opts.overrides or {}).items():
        if not isinstance(kw, dict):
            raise ValueError(f"override for {role!r} must be a dict of constructor arguments")
        overrides.setdefault(role, {}).update(kw)
    for role, kw in overrides.items():
        if role not in preset.components:
            raise ValueError(f"override for unknown component {role!r} (preset {preset_name!r} has "
                             f"{', '.join(preset.components)})")
        if not isinstance(kw, dict):
            raise ValueError(f"override for {role!r} must be a dict of constructor arguments")
    out.overrides = json.loads(json.dumps(overrides))
    _validate(out)
    return out


def _parse_metrics(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [m for m in re.split(r"[,\s]+", value) if m]
    names = [str(m).strip() for m in value if str(m).strip()]
    return [] if names in (["none"], ["None"]) else names


def _validate(o: TrainOptions) -> None:
    checks = [
        (o.batch is not None and int(o.batch) >= 1, f"--batch must be >= 1, got {o.batch}"),
        (o.kimg is None or float(o.kimg) > 0, f"--kimg must be > 0, got {o.kimg}"),
        (o.steps is None or int(o.steps) >= 1, f"--steps must be >= 1, got {o.steps}"),
        (o.minutes is None or float(o.minutes) > 0, f"--minutes must be > 0, got {o.minutes}"),
        (float(o.tick) > 0, f"--tick must be > 0 kimg, got {o.tick}"),
        (int(o.snap) >= 1, f"--snap must be >= 1 tick, got {o.snap}"),
        (int(o.keep) >= 1, f"--keep must be >= 1, got {o.keep}"),
        (float(o.ema_kimg) >= 0, f"--ema-kimg must be >= 0, got {o.ema_kimg}"),
        (o.ema_rampup is None or float(o.ema_rampup) >= 0, f"--ema-rampup must be >= 0, got {o.ema_rampup}"),
        (int(o.workers) >= 0, f"--workers must be >= 0, got {o.workers}"),
        (int(o.grid) >= 1, f"--grid must be >= 1, got {o.grid}"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ValueError(msg)


def parse_hparam(text: str) -> tuple[str, Any]:
    """``"lr=0.001"`` -> ``("lr", 0.001)``; the value is JSON if it parses (numbers, lists, true/false), else a
    string."""
    m = re.fullmatch(r"\s*([A-Za-z_]\w*)\s*=\s*(.*)", text)
    if not m:
        raise ValueError(f"bad --hparam {text!r}: expected KEY=VALUE, e.g. lr=0.001 or betas=[0,0.99]")
    key, raw = m.groups()
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value


def parse_override(text: str) -> tuple[str, str, Any]:
    """``"G.channel_base=16"`` -> ``("G", "channel_base", 16)``; the value is JSON if it parses, else a string."""
    m = re.fullmatch(r"\s*([A-Za-z_][\w]*)\.([A-Za-z_]\w*)\s*=\s*(.*)", text)
    if not m:
        raise ValueError(f"bad override {text!r}: expected ROLE.ARG=VALUE, e.g. G.channel_base=32")
    role, key, raw = m.groups()
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return role, key, value
