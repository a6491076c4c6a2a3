"""What ``leangen compress`` checks before any training, and how a rerun recognises its own output folder.

Every check raises ``ValueError`` with one line: a missing teacher, a teacher that is not a prunable label-map
translator or generator, a teacher whose preset has no compression stages, an unknown metric or one of the wrong kind (paired for a translator,
sampled for a generator), unpaired data for a translator,
thread counts that are not positive, a MACs budget that is not finite and positive or below what the narrowest
model (``min_channels`` per width) executes, a latency target that is not positive, comes with another budget, or
that the narrowest model misses on the target runtime (``leangen.compress.latency.check_target``).

``OUTDIR/compress.json`` records the options that decide the results. A rerun with the same options resumes; with
other options it is refused (``--overwrite`` starts afresh, removing that folder's earlier results), except options
whose first step has not started (``_FIRST_STEP``), and ``--distill-steps`` while distillation has not finished: more
steps continue it, fewer stop it at the step it reached (with ``--distill-eval-every``, the best evaluation so far is
the student). ``--redo STEP`` removes the results of STEP and the steps after it first, so a finished condensation
(the expensive step, and the same for every budget) serves another latency target, margin or distillation recipe.
"""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from leangen.compress.options import STEPS

if TYPE_CHECKING:
    from leangen.compress.options import CompressOptions

IDENTITY_NAME = "compress.json"
# Options a rerun may change while the step they bound has not finished: a distillation that has not met its
# target may be given more steps, or cut short at the evaluation it reached; one that ended keeps its result.
_EXTENDABLE = {"distill_steps": "distill"}
# Options that do not change what the pipeline computes (where it trains, whether to redo it).
_NOT_IDENTITY = ("device", "overwrite", "redo")
# The first step each option bounds (``hparams.<step>``: that step's extra hyper-parameters); any other option
# (teacher, data, metric, threads, ...) bounds condensation, and so every step.
_FIRST_STEP = {**dict.fromkeys(("threshold", "macs_budget", "target_fps", "target_ms", "runtime", "target_resolution",
                                "width_search", "latency_margin", "widths", "min_channels"), "prune"),
               **dict.fromkeys(("distill_steps", "distill_eval_every", "quality_target", "patience",
                                "hparams.distill"), "distill"),
               "onnx": "deploy"}
# What each step writes in the output folder.
_OUTPUTS = {"condense": ("condense",), "prune": ("prune",), "distill": ("distill", "student"),
            "deploy": ("onnx", "report.json", "report.md")}
# Options added later, left out while unset so folders started before them still resume.
_LATER = {"target_fps": None, "target_ms": None, "distill_eval_every": None, "quality_target": None, "patience": None,
          "widths": None, "target_resolution": None, "latency_margin": 0.0}


def teacher_preset(opts: "CompressOptions") -> str:
    """The teacher's preset: ``opts.preset``, else the one recorded by its run (the teacher may be the run, one of
    its snapshots or a folder inside the run)."""
    if opts.preset:
        return opts.preset
    from leangen.train.options import read_run_options

    path = Path(opts.teacher).expanduser().resolve()
    for run in (path, *list(path.parents)[:3]):  # run/, run/checkpoints/snapshot-*/, run/checkpoints/snapshot-*/G
        preset = read_run_options(run).get("preset")
        if preset:
            return str(preset).removesuffix("-condense").removesuffix("-distill")
    raise ValueError(f"cannot tell the preset of {opts.teacher}; pass --preset")


def check_options(opts: "CompressOptions") -> tuple[Any, str]:
    """Validate ``opts`` (see the module doc); returns the loaded teacher and its preset."""
    import leangen
    from leangen.models.pretrained import model_task
    from leangen.presets import get_preset

    if not opts.threads or any(not isinstance(t, int) or isinstance(t, bool) or t < 1 for t in opts.threads):
        raise ValueError(f"--threads takes positive thread counts such as 1,2; got {opts.threads}")
    path = Path(opts.teacher).expanduser()
    if not path.exists():
        raise ValueError(f"no teacher at {opts.teacher}: give a run directory, snapshot or saved model of a trained "
                         f"translator")
    try:
        teacher = leangen.load(path)
    except (FileNotFoundError, ValueError, KeyError, OSError) as e:
        raise ValueError(f"cannot load the teacher {opts.teacher}: {_first_line(e)}") from None
    what = f"{opts.teacher} holds a {teacher.kind} ({teacher.model_type})"
    if model_task(teacher) not in ("paired", "unconditional"):
        raise ValueError(f"{what}; leangen compress needs a trained label-map translator (ResNet, U-Net, ASAP-Net) "
                         f"or StyleGAN2 generator")
    if not teacher.prunable:
        raise ValueError(f"{what} without prunable channels; leangen compress works on ResNet, U-Net and ASAP-Net "
                         f"translators and StyleGAN2 generators")
    if opts.distill_eval_every is None and (opts.quality_target is not None or opts.patience is not None):
        raise ValueError("--quality-target and --patience stop distillation on the validation metric: they need "
                         "--distill-eval-every STEPS (how often to evaluate)")
    base = teacher_preset(opts)
    for stage in ("condense", "distill"):
        try:
            get_preset(f"{base}-{stage}")
        except KeyError:
            raise ValueError(f"preset {base!r} has no {base}-{stage} stage; pass the teacher's --preset") from None
    _check_data_and_metric(opts, teacher)
    if opts.macs_budget is not None:
        _check_budget(opts, teacher)
    if opts.widths is not None:
        _check_widths(opts, teacher)
    if opts.width_search not in ("table", "uniform", "threshold"):
        raise ValueError(f"--width-search must be table, uniform or threshold, got {opts.width_search!r}")
    margin = opts.latency_margin
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin < 1:
        raise ValueError(f"--latency-margin must be a fraction in [0, 1), got {margin}")
    if margin and opts.target_fps is None and opts.target_ms is None:
        raise ValueError("--latency-margin is headroom under a latency target: give --target-fps or --target-ms")
    from leangen.compress.latency import check_target

    check_target(opts, teacher)  # last: it times the narrowest model on the target runtime
    return teacher, base


def _check_data_and_metric(opts: "CompressOptions", teacher: Any) -> None:
    from leangen.metrics.registry import parse_metric, plan_metrics
    from leangen.models.pretrained import model_task
    from leangen.tasks import is_paired, open_eval_data

    try:
        spec = parse_metric(opts.metric)
    except ValueError as e:
        raise ValueError(f"--metric {opts.metric}: {_first_line(e)}") from None
    generator = model_task(teacher) == "unconditional"
    if generator and spec.consumes != "samples":
        raise ValueError(f"--metric {opts.metric} does not measure a generator's samples; a generator is compressed "
                         f"with a sampled metric such as fid1k or kid1k")
    if not generator and spec.consumes != "paired":
        raise ValueError(f"--metric {opts.metric} does not measure translated pairs; use psnr, l1 or fid_pairs<N>")
    try:
        val = open_eval_data(opts.data, teacher, split=eval_split(teacher))
    except (FileNotFoundError, ValueError, OSError, KeyError) as e:
        raise ValueError(f"cannot open --data {opts.data}: {_first_line(e)}") from None
    if not generator and not is_paired(val):
        raise ValueError(f"--data {opts.data} holds no label map -> image pairs; compress distills on paired data")
    plan_metrics([opts.metric], teacher, val)


def eval_split(model: Any) -> str | None:
    """The split the pipeline measures on: a translator's validation pairs; a generator's metric split (sampled
    metrics compare with the real images the task measures against, StyleGAN's protocol)."""
    from leangen.models.pretrained import model_task

    return None if model_task(model) == "unconditional" else "val"


def _check_budget(opts: "CompressOptions", teacher: Any) -> None:
    from leangen.compress.prune import narrowest_macs

    budget = opts.macs_budget
    if not isinstance(budget, (int, float)) or not math.isfinite(budget) or budget <= 0:
        raise ValueError(f"--gmacs must be a positive number of GMACs per image, got {budget}")
    floor = narrowest_macs(teacher, opts.min_channels) / 1e9
    if budget < floor:
        raise ValueError(f"--gmacs {budget:g} is below what the narrowest model ({opts.min_channels} channel(s) per "
                         f"width) executes, {floor:.6g} GMACs per image; give at least that")


def _check_widths(opts: "CompressOptions", teacher: Any) -> None:
    full = [int(w) for w in teacher.widths]
    given = [n for n, v in (("--gmacs", opts.macs_budget), ("--target-fps", opts.target_fps),
                            ("--target-ms", opts.target_ms)) if v is not None]
    if given:
        raise ValueError(f"give one budget, not --widths and {' and '.join(given)}")
    widths = opts.widths or []
    if len(widths) != len(full) or any(isinstance(w, bool) or not isinstance(w, int) or not 1 <= w <= f
                                       for w, f in zip(widths, full)):
        raise ValueError(f"--widths takes {len(full)} channel counts, each from 1 to the teacher's width "
                         f"{','.join(map(str, full))}; got {','.join(map(str, widths))}")


def identity(opts: "CompressOptions") -> dict[str, Any]:
    """The options that decide the pipeline's results, with the teacher as an absolute path."""
    doc = {k: v for k, v in dataclasses.asdict(opts).items() if k not in _NOT_IDENTITY}
    for k, unset in _LATER.items():
        if doc.get(k) == unset:
            doc.pop(k)
    if "target_fps" not in doc and "target_ms" not in doc:
        doc.pop("runtime")  # only a latency target reads them
        doc.pop("width_search")
        doc.pop("latency_margin", None)
    doc["teacher"] = str(Path(opts.teacher).expanduser().resolve())
    data = Path(opts.data).expanduser()
    doc["data"] = str(data.resolve()) if data.exists() else opts.data
    return json.loads(json.dumps(doc))  # tuples -> lists, so it compares equal to what was read back


def claim_outdir(opts: "CompressOptions") -> None:
    """Resume, refuse or start afresh in ``opts.outdir`` (see the module doc); records the identity first."""
    from leangen.utils.files import write_json_atomic

    out = Path(opts.outdir)
    if opts.redo is not None and opts.redo not in STEPS[1:]:
        raise ValueError(f"--redo takes one of {', '.join(STEPS[1:])}, got {opts.redo!r} (--overwrite redoes "
                         f"condense)")
    mine = identity(opts)
    record = out / IDENTITY_NAME
    if out.exists() and not out.is_dir():
        raise ValueError(f"--outdir {out} is a file")
    if record.is_file():
        try:
            theirs = json.loads(record.read_text())
        except ValueError:
            theirs = {}
        redone = STEPS[STEPS.index(opts.redo):] if opts.redo and not opts.overwrite else ()
        if theirs != mine and _only_unstarted(out, theirs, mine, redone):
            theirs = mine  # the new options are recorded below; the finished steps they do not bound stand
        if theirs != mine and not opts.overwrite:
            first = min((STEPS.index(_FIRST_STEP.get(k, "condense")) for k in _changed(theirs, mine)), default=0)
            redo = f", --redo {STEPS[first]} to keep the steps before {STEPS[first]}" if first else ""
            raise ValueError(f"{out} holds a compression started with other options ({_diff(theirs, mine)}); rerun "
                             f"with the same options to resume{redo}, or pass --overwrite to start afresh")
        if theirs != mine:
            shutil.rmtree(out)
        elif redone:  # only once the options are accepted: a refused rerun loses nothing
            remove_steps(out, redone[0])
    elif out.is_dir() and any(out.iterdir()):
        if not opts.overwrite or not _looks_like_ours(out):
            raise ValueError(f"{out} is not empty and holds no {IDENTITY_NAME}; choose a new --outdir")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(record, mine)


def remove_steps(out: Path, first: str) -> None:
    """Remove what ``first`` and the steps after it wrote in ``out`` (``--redo``); the earlier steps stay."""
    for step in STEPS[STEPS.index(first):]:
        for name in _OUTPUTS[step]:
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()


def _changed(theirs: dict[str, Any], mine: dict[str, Any]) -> set[str]:
    """The options that differ, ``hparams`` split per step (``hparams.distill``)."""
    def flat(doc: dict[str, Any]) -> dict[str, Any]:
        hp = doc.get("hparams") or {}
        return {**{k: v for k, v in doc.items() if k != "hparams"},
                **{f"hparams.{step}": v for step, v in hp.items() if v}}
    a, b = flat(theirs), flat(mine)
    return {k for k in set(a) | set(b) if a.get(k) != b.get(k)}


def _only_unstarted(out: Path, theirs: dict[str, Any], mine: dict[str, Any], redone: tuple[str, ...]) -> bool:
    """Whether the records differ only in options whose first step has not started (or is in ``redone``), or in
    ``_EXTENDABLE`` ones whose step has not finished (or only in how an empty ``hparams`` entry was written)."""
    def started(step: str) -> bool:
        return step not in redone and any((out / name).exists() for name in _OUTPUTS[step])

    def finished(step: str) -> bool:
        return step not in redone and (out / step / "report.json").is_file()

    return all((k in _FIRST_STEP and not started(_FIRST_STEP[k])) or (k in _EXTENDABLE and not finished(_EXTENDABLE[k]))
               for k in _changed(theirs, mine))


def _looks_like_ours(out: Path) -> bool:
    """A folder written by an older leangen compress (before ``compress.json``): only step folders and reports."""
    known = {"condense", "prune", "distill", "student", "onnx", "report.json", "report.md"}
    return all(p.name in known for p in out.iterdir())


def _diff(a: dict[str, Any], b: dict[str, Any]) -> str:
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return ", ".join(f"{k}: {a.get(k)!r} before, {b.get(k)!r} now" for k in keys[:3]) or "unreadable record"


def _first_line(e: BaseException) -> str:
    text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    return (text.strip().splitlines() or [type(e).__name__])[0]
