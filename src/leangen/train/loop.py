"""The training loop: one flat loop, shared by every objective (see ``leangen.train.objective``).

Per step: next batch -> ``objective.train_step`` -> one all-reduce of the step's statistics (non-finite values
stop the run) -> EMA update -> counters. Every ``tick`` kimg: a progress line, ``stats.jsonl``, TensorBoard,
``curves.png``. Every ``snap`` ticks, at the end and on Ctrl-C: a sample grid, an atomic snapshot, metrics.

Distributed training is data parallel over ``torchrun`` processes (``RANK``/``WORLD_SIZE``/``LOCAL_RANK``): each
rank takes ``batch / world_size`` images of a shared permutation, objectives average gradients through
``Runtime.reduce_grads`` before each optimizer step (an explicit all-reduce, like StyleGAN3, rather than a
``DistributedDataParallel`` wrapper, because GAN phases call ``G.map``/``G.synthesis`` separately and R1 needs
double backward). Only rank 0 writes files.

Resuming (``--resume``) restores weights, optimizer moments, counters, every rank's RNG states and the data
position, so on the CPU a run stopped and resumed ends with the same bits as one that never stopped.
"""
from __future__ import annotations

import json
import math
import os
import random
import resource
import signal
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset

from leangen import runs as ckpt
from leangen.train.data import BatchStream, _image
from leangen.train.objective import Objective, get_objective
from leangen.train.options import TrainOptions, read_run_options, resolve_options
from leangen.train.report import Reporter
from leangen.utils.timefmt import format_time
from leangen.utils.device import resolve_device
from leangen.utils.files import atomic_path, write_json_atomic


class TrainingError(RuntimeError):
    """The run stopped for a reason the user can act on (message says what and how to continue)."""


class NonFiniteLossError(TrainingError):
    """A loss or statistic became NaN/inf; no snapshot was written after it."""


@dataclass
class TrainResult:
    run_dir: Path
    snapshot: Path | None      # the last snapshot written (None if none)
    status: str                # "done" | "interrupted"
    cur_nimg: int
    step: int


# ----------------------------------------------------------------------------------------------------------------------
# Runtime: device, AMP and the process group, as objectives see them

@dataclass
class Runtime:
    """Where and how this process trains. Objectives use ``autocast``, ``reduce_grads`` and ``all_reduce_mean``."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    amp: bool = False
    owns_process_group: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self) -> torch.autocast:
        """bf16 autocast when AMP is on (no loss scaling needed for bf16), a no-op otherwise."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    def reduce_grads(self, module: nn.Module) -> None:
        """Average the gradients of ``module``'s trainable parameters over ranks (one flat all-reduce)."""
        if not self.distributed:
            return
        params = [p for p in module.parameters() if p.requires_grad]
        if not params:
            return
        for p in params:
            if p.grad is None:  # every rank must contribute the same layout
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.flatten() for p in params])  # type: ignore[union-attr]
        dist.all_reduce(flat)
        flat /= self.world_size
        for p, g in zip(params, flat.split([p.numel() for p in params])):
            p.grad.copy_(g.view_as(p))  # type: ignore[union-attr]

    def all_reduce_mean(self, t: torch.Tensor) -> torch.Tensor:
        if not self.distributed:
            return t
        t = t.detach().clone()
        dist.all_reduce(t)
        return t / self.world_size

    def broadcast_module(self, module: nn.Module) -> None:
        """Copy rank 0's parameters and buffers to every rank."""
        if self.distributed:
            for t in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(t.data, src=0)

    def gather_object(self, obj: Any) -> list[Any]:
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any) -> Any:
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def setup_runtime(device: str = "auto", amp: bool | None = None) -> Runtime:
    """Read the torchrun environment, pick the device and join the process group (NCCL on GPU, gloo on CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        if world_size > 1:
            dev = torch.device("cuda", local_rank)  # one GPU per process
        torch.cuda.set_device(dev)
        torch.backends.cudnn.benchmark = True
    owns = False
    if world_size > 1 and not dist.is_initialized():
        # Metrics run on rank 0 only while the others wait in the next collective: allow for that.
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world_size,
                                timeout=timedelta(minutes=60))
        owns = True
    return Runtime(dev, rank, world_size, local_rank, amp=bool(amp), owns_process_group=owns)


# ----------------------------------------------------------------------------------------------------------------------
# Small helpers

@torch.no_grad()
def update_ema(ema: nn.Module, source: nn.Module, beta: float) -> None:
    """``ema = beta * ema + (1 - beta) * source`` for parameters; buffers (w_avg, constant noise) are copied."""
    for p_ema, p in zip(ema.parameters(), source.parameters()):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(ema.buffers(), source.buffers()):
        b_ema.copy_(b)


def ema_beta(batch: int, cur_nimg: int, ema_kimg: float, ema_rampup: float | None) -> float:
    """StyleGAN's per-step EMA decay: half-life of ``ema_kimg`` thousand images (shortened early by the ramp-up)."""
    ema_nimg = ema_kimg * 1000
    if ema_rampup:
        ema_nimg = min(ema_nimg, cur_nimg * ema_rampup)
    return 0.5 ** (batch / max(ema_nimg, 1e-8))


def param_checksums(modules: dict[str, nn.Module]) -> dict[str, float]:
    """Float64 sum of each module's parameters: equal on every rank iff the replicas agree (to the bit, in practice)."""
    return {name: float(sum(p.detach().double().sum() for p in m.parameters())) for name, m in modules.items()}


def all_finite(modules: dict[str, nn.Module]) -> str | None:
    """Name of the first parameter with a non-finite value, or None."""
    for name, m in modules.items():
        for pname, p in m.named_parameters():
            if not torch.isfinite(p).all():
                return f"{name}.{pname}"
    return None


def save_grid(images: torch.Tensor, path: Path) -> None:
    from PIL import Image

    from leangen.models.base import image_grid

    with atomic_path(path) as tmp:
        Image.fromarray(image_grid(images)).save(tmp, format="PNG")


def _metric_value(record: Any, name: str) -> float | None:
    if not isinstance(record, dict):
        return None
    results = record.get("results")
    if isinstance(results, dict):
        v = results.get(name, next(iter(results.values()), None))
        return float(v) if isinstance(v, (int, float)) else None
    v = record.get("value")
    return float(v) if isinstance(v, (int, float)) else None


class _StopFlag:
    """First SIGINT/SIGTERM: finish the current step, snapshot, exit. Second SIGINT: abort at once."""

    def __init__(self, on_signal: Callable[[str], None]) -> None:
        self.requested = False
        self._on_signal = on_signal
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "_StopFlag":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    self._old[sig] = signal.signal(sig, self._handle)
                except (ValueError, OSError):  # pragma: no cover - embedded interpreters
                    pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        self._on_signal(signal.Signals(signum).name)

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


# ----------------------------------------------------------------------------------------------------------------------
# The loop

class TrainingLoop:
    """``TrainingLoop(options, dataset=None).run()``; ``dataset`` overrides ``options.data`` (in-memory tests, API use).

    ``dataset`` items are uint8 ``[3, R, R]`` tensors or ``(image, label)`` tuples.
    """

    def __init__(self, options: TrainOptions, dataset: Dataset | None = None) -> None:
        self.options = options
        self.dataset = dataset

    def run(self) -> TrainResult:
        rt = setup_runtime(self.options.device, self.options.amp)
        try:
            return self._run(rt)
        finally:
            if rt.owns_process_group and dist.is_initialized():
                dist.destroy_process_group()

    # -- set-up -----------------------------------------------------------------------------------------------------
    def _run(self, rt: Runtime) -> TrainResult:
        from leangen.registry import get_preset

        # 1. Options, resolved against the run being resumed and the preset.
        resume_run, resume_snap, stored = None, None, None
        if self.options.resume:
            resume_run, resume_snap = ckpt.resolve_resume(self.options.resume, self.options.outdir or "runs")
            stored = read_run_options(resume_run)
        opts = resolve_options(self.options, stored)
        rt.amp = bool(opts.amp)
        preset = get_preset(opts.preset)  # type: ignore[arg-type]
        batch = int(opts.batch)  # type: ignore[arg-type]
        if batch % rt.world_size:
            raise ValueError(f"--batch {batch} is not divisible by the {rt.world_size} processes")
        batch_gpu = batch // rt.world_size
        metric_fns = _load_metrics(opts.metrics or [])

        # 2. Networks and optimizers: seeded identically on every rank, then rank 0's copy wins anyway.
        seed = int(opts.seed)  # type: ignore[arg-type]
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        objective: Objective = get_objective(preset.objective)()
        objective.build(preset, rt, opts)
        modules = objective.modules()
        for m in modules.values():
            rt.broadcast_module(m)
        resolution = int(getattr(objective.eval_model(), "img_resolution", preset.resolution))

        # 3. Data.
        dataset = self.dataset
        if dataset is None:
            from leangen.data.dataset import open_dataset

            # Rank 0 first: a built-in dataset is rendered and cached on first use, once.
            if not rt.is_main:
                rt.barrier()
            dataset = open_dataset(opts.data, resolution=resolution)  # type: ignore[arg-type]
            if rt.is_main:
                rt.barrier()
        data_name = getattr(dataset, "name", None) or Path(str(opts.data)).stem

        # 4. Run directory: the resumed one, or the next free id (decided by rank 0).
        if resume_run is not None:
            run_dir = resume_run
        else:
            run_dir = rt.broadcast_object(ckpt.new_run_dir(opts.outdir, f"{opts.preset}-{data_name}")  # type: ignore[arg-type]
                                          if rt.is_main else None)
        rep = Reporter(run_dir if rt.is_main else None, enabled=rt.is_main, progress=opts.progress)
        try:
            return self._train(rt, opts, preset, objective, dataset, data_name, resolution, run_dir, resume_snap,
                               rep, batch, batch_gpu, seed, metric_fns)
        except TrainingError as e:
            rep.log(f"error: {e}", err=True)
            raise
        except Exception as e:  # keep the reason in log.txt too; the traceback goes to the caller
            rep.log(f"error: {type(e).__name__}: {e}", err=True)
            raise
        finally:
            rep.close()

    def _train(self, rt: Runtime, opts: TrainOptions, preset: Any, objective: Objective, dataset: Dataset,
               data_name: str, resolution: int, run_dir: Path, resume_snap: Path | None, rep: Reporter,
               batch: int, batch_gpu: int, seed: int, metric_fns: tuple[Any, Any] | None) -> TrainResult:
        modules = objective.modules()
        optimizers = objective.optimizers()
        dev = rt.device

        # 5. Counters and state: fresh, or everything restored from the snapshot.
        cur_nimg = step = cur_tick = tick_start_nimg = 0
        total_time = 0.0
        data_position = 0
        best_metric: dict[str, Any] | None = None
        if resume_snap is not None:
            st = ckpt.load_state(resume_snap)
            if st.get("preset") != opts.preset or st.get("objective") != objective.name:
                raise ckpt.IncompatibleCheckpointError(
                    f"{resume_snap} was trained with preset {st.get('preset')!r} ({st.get('objective')} objective), "
                    f"not {opts.preset!r}; resume with the run's own preset or start a new run")
            ckpt.load_modules(resume_snap, modules)
            for name, opt in optimizers.items():
                opt.load_state_dict(st["optimizers"][name])
            objective.load_state_dict(st.get("objective_state", {}))
            cur_nimg, step, cur_tick = int(st["cur_nimg"]), int(st["step"]), int(st["tick"])
            tick_start_nimg, total_time = int(st["tick_start_nimg"]), float(st["total_time"])
            best_metric = st.get("best_metric")
            data_position = int(st["data"]["position"])
            old_ws = int(st["world_size"])
            if old_ws != rt.world_size or int(st["batch"]) != batch:
                data_position = data_position * old_ws // rt.world_size
                rep.log(f"note: resuming with {rt.world_size} process(es) and batch {batch} (the snapshot had "
                        f"{old_ws} and {st['batch']}): training continues but is not bit-identical")
            rngs = st["rng"]
            if len(rngs) == rt.world_size:
                ckpt.set_rng_state(rngs[rt.rank], dev)
            else:
                torch.manual_seed(seed * rt.world_size + rt.rank + step)
        else:
            np.random.seed((seed * rt.world_size + rt.rank) % (1 << 32))
            torch.manual_seed(seed * rt.world_size + rt.rank)  # different latents/noise per rank
            random.seed(seed * rt.world_size + rt.rank)
        rt.barrier()  # every rank has read the snapshot before rank 0 touches the run directory

        total_nimg = None if opts.kimg is None else int(round(float(opts.kimg) * 1000))
        total_steps = opts.steps

        def finished() -> bool:
            return (total_steps is not None and step >= total_steps) or (total_nimg is not None and cur_nimg >= total_nimg)

        # 6. Files (rank 0): options, reals and initial fakes.
        grid_seeds = list(range(int(opts.grid)))  # type: ignore[arg-type]
        if rt.is_main:
            ckpt.clean_partial(run_dir)
            if resume_snap is not None:
                for moved in ckpt.set_aside_newer(run_dir, resume_snap):
                    rep.log(f"note: {moved.name[len('superseded-'):]} is newer than the resumed snapshot; kept as {moved}")
                rep.truncate_stats(step)
                rep.log(f"\nResuming {run_dir} from {resume_snap.name} (kimg {cur_nimg / 1000:.3f}, step {step})")
            doc = opts.to_dict()
            doc["run"] = {
                "run_dir": str(run_dir), "objective": objective.name, "world_size": rt.world_size,
                "batch_per_process": batch_gpu, "device": str(dev), "amp": rt.amp, "dataset_name": data_name,
                "dataset_size": len(dataset),  # type: ignore[arg-type]
                "components": {k: {"model_type": getattr(m, "model_type", type(m).__name__),
                                   "config": getattr(m, "config", None)} for k, m in modules.items()},
                "params": {k: sum(p.numel() for p in m.parameters()) for k, m in modules.items()},
                "resumed_from": str(resume_snap) if resume_snap else None,
                "torch": torch.__version__,
            }
            write_json_atomic(run_dir / "training_options.json", doc)
            if resume_snap is None:
                rep.log("Training options:\n" + json.dumps(opts.to_dict(), indent=2))
                rep.log(f"\nRun directory: {run_dir}")
                save_grid(_reals(dataset, len(grid_seeds), seed), run_dir / "reals.png")
                save_grid(objective.sample(grid_seeds), run_dir / "fakes_init.png")
            params = ", ".join(f"{k} {v / 1e6:.2f}M" for k, v in doc["run"]["params"].items())
            rep.log(f"{preset.name} ({params}) on {data_name} ({len(dataset)} images), {dev}"  # type: ignore[arg-type]
                    f"{' bf16 AMP' if rt.amp else ''}, {rt.world_size} process(es), batch {batch} ({batch_gpu}/process)")
        if finished():
            rep.log(f"Nothing to do: the run is already at kimg {cur_nimg / 1000:.3f} (step {step}); "
                    f"pass a larger --kimg/--steps to continue")
            return TrainResult(run_dir, resume_snap, "done", cur_nimg, step)

        # 7. The loop.
        stream = BatchStream(dataset, batch_gpu, seed=seed, rank=rt.rank, world_size=rt.world_size,
                             mirror=bool(opts.mirror), workers=int(opts.workers), device=dev,  # type: ignore[arg-type]
                             position=data_position)
        ema = {tgt: (modules[tgt], modules[src]) for tgt, src in objective.ema_pairs().items()}
        tick_nimg = int(round(float(opts.tick) * 1000))  # type: ignore[arg-type]
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        metric_history: dict[str, list[tuple[float, float]]] = {}
        last_snapshot = resume_snap
        status = "done"
        start_time = time.time() - total_time
        deadline = None if opts.minutes is None else time.time() + float(opts.minutes) * 60  # this invocation's budget
        tick_start_time = time.time()
        timed_nimg = cur_nimg  # images since tick_start_time (after a resume, less than since tick_start_nimg)
        maintenance = 0.0
        step_time = None
        first_batch = True
        if total_steps is not None:
            rep.start_progress(total_steps, step, "step")
        else:
            rep.start_progress(total_nimg / 1000, cur_nimg / 1000, "kimg")  # type: ignore[operator]
        rep.log(f"Training for {f'{total_steps} steps' if total_steps is not None else f'{opts.kimg} kimg'}...")

        def snapshot(collective: bool = True) -> Path | None:
            """Sample grid, atomic snapshot and metrics. ``collective=False``: rank 0 alone (after a raw interrupt)."""
            nonlocal best_metric
            rng = ckpt.get_rng_state(dev)
            rngs = rt.gather_object(rng) if collective else [rng]
            if rt.distributed and collective:
                sums_by_rank = rt.gather_object(param_checksums(modules))
                if any(s != sums_by_rank[0] for s in sums_by_rank):
                    raise TrainingError(f"ranks diverged at step {step}: parameter checksums {sums_by_rank}")
                rep.log(f"ranks in sync at step {step}: parameter checksums per rank "
                        f"{json.dumps(sums_by_rank)}")
            bad = all_finite(modules)  # checked on every rank (the replicas agree), so all of them stop
            if bad is not None:
                raise NonFiniteLossError(f"parameter {bad} is not finite at step {step}; snapshot not written. "
                                         f"Last good snapshot: {ckpt.latest_snapshot(run_dir) or 'none'}")
            if not rt.is_main:
                return None
            kimg = cur_nimg // 1000
            save_grid(objective.sample(grid_seeds), run_dir / f"fakes{kimg:06d}.png")
            state = {
                "format": ckpt.STATE_FORMAT, "preset": opts.preset, "objective": objective.name,
                "cur_nimg": cur_nimg, "step": step, "tick": cur_tick, "tick_start_nimg": tick_start_nimg,
                "total_time": time.time() - start_time, "batch": batch, "world_size": rt.world_size,
                "data": {"position": stream.position, "seed": seed, "mirror": bool(opts.mirror),
                         "dataset_size": len(dataset)},  # type: ignore[arg-type]
                "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
                "objective_state": objective.state_dict(),
                "rng": rngs, "best_metric": best_metric,
            }
            name = ckpt.snapshot_name(run_dir, kimg, step)
            try:
                path = ckpt.save_snapshot(run_dir, name, modules, state, keep=int(opts.keep))  # type: ignore[arg-type]
            except ckpt.SnapshotError as e:
                raise TrainingError(str(e)) from e
            rep.log(f"snapshot {path.relative_to(run_dir)}")
            if metric_fns is not None and opts.metrics:
                calc_metrics, report_metric = metric_fns
                devices = [dev] if dev.type == "cuda" else []
                with torch.random.fork_rng(devices=devices):  # metrics must not shift the training RNG stream
                    # One call for all names: metrics of the same size share the generated and real features.
                    t0 = time.time()
                    records = calc_metrics(list(opts.metrics), objective.eval_model(), dataset, device=dev,
                                           progress=False)
                    took = format_time(time.time() - t0)
                    for name_m, record in zip(opts.metrics, records):
                        if isinstance(record, dict):
                            record.setdefault("snapshot", str(path))
                            record.setdefault("kimg", cur_nimg / 1000)
                        report_metric(record, run_dir)
                        value = _metric_value(record, name_m)
                        rep.log(f"metric {name_m}: {value if value is not None else record} ({took} for "
                                f"{', '.join(opts.metrics)})")
                        if value is not None:
                            metric_history.setdefault(name_m, []).append((cur_nimg / 1000, value))
                            higher = name_m.startswith(("pr", "is", "precision", "recall"))
                            if name_m == opts.metrics[0] and (best_metric is None or (
                                    value > best_metric["value"] if higher else value < best_metric["value"])):
                                best_metric = {"name": name_m, "value": value, "kimg": cur_nimg / 1000,
                                               "snapshot": path.name}
            return path

        stop = _StopFlag(lambda sig: rep.log(f"\n{sig} received: finishing this step, then writing a snapshot "
                                               f"(press Ctrl-C again to abort without one)"))
        try:
            with stop:
                while True:
                    t_step = time.perf_counter()
                    real = stream.next()
                    if first_batch and real.shape[1:] != (3, resolution, resolution):
                        raise ValueError(f"dataset images are {tuple(real.shape[1:])} but {preset.name} makes "
                                         f"(3, {resolution}, {resolution}); recreate the dataset at {resolution}px")
                    first_batch = False
                    stats = objective.train_step(real, step)

                    # One collective per step: statistics averaged over ranks, plus "any rank wants to stop" and
                    # "any rank's clock passed the time budget" (so every rank stops at the same step).
                    names = list(stats)
                    out_of_time = deadline is not None and time.time() >= deadline
                    vec = torch.stack([stats[k].detach().float().reshape(()) for k in names]
                                      + [torch.tensor(float(stop.requested), device=dev),
                                         torch.tensor(float(out_of_time), device=dev)])
                    values = rt.all_reduce_mean(vec).tolist()
                    time_up = values.pop() > 0
                    stop_now = values.pop() > 0
                    bad = [(k, v) for k, v in zip(names, values) if not math.isfinite(v)]
                    if bad:
                        k, v = bad[0]
                        last = ckpt.latest_snapshot(run_dir)
                        raise NonFiniteLossError(
                            f"{k} became {v} at step {step} (kimg {cur_nimg / 1000:.3f}); stopped without writing "
                            f"a snapshot. Last good snapshot: {last or 'none (no snapshot was written yet)'}. "
                            + (f"Try a lower --lr or a larger --r1-gamma and resume: leangen train --resume {last}"
                               if last else "Try a lower --lr or a larger --r1-gamma."))

                    for ema_m, src_m in ema.values():
                        update_ema(ema_m, src_m, ema_beta(batch, cur_nimg, float(opts.ema_kimg),  # type: ignore[arg-type]
                                                          opts.ema_rampup))
                    step += 1
                    cur_nimg += batch
                    for k, v in zip(names, values):
                        sums[k] = sums.get(k, 0.0) + v
                        counts[k] = counts.get(k, 0) + 1
                    dt = time.perf_counter() - t_step
                    step_time = dt if step_time is None else 0.9 * step_time + 0.1 * dt
                    rep.update_progress(step if total_steps is not None else cur_nimg / 1000,
                                        {k: sums[k] / counts[k] for k in names}, 1 / max(step_time, 1e-9))
                    done = finished() or time_up
                    if time_up and not finished() and rt.is_main:
                        rep.log(f"\nTime budget of {opts.minutes:g} min reached at kimg {cur_nimg / 1000:.3f}")
                    if not done and not stop_now and cur_nimg < tick_start_nimg + tick_nimg:
                        continue

                    # Tick: report, maybe snapshot.
                    cur_tick += 1
                    tick_end_time = time.time()
                    tick_sec = tick_end_time - tick_start_time
                    tick_kimg = (cur_nimg - timed_nimg) / 1000
                    row: dict[str, Any] = {"tick": cur_tick, "kimg": cur_nimg / 1000, "step": step}
                    row.update({k: sums[k] / counts[k] for k in sums})
                    row.update({
                        "total_sec": tick_end_time - start_time, "sec_per_tick": tick_sec,
                        "sec_per_kimg": tick_sec / max(tick_kimg, 1e-9),
                        "img_per_sec": tick_kimg * 1000 / max(tick_sec, 1e-9), "maintenance_sec": maintenance,
                        "cpu_mem_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20,
                        "ema_beta": ema_beta(batch, cur_nimg, float(opts.ema_kimg), opts.ema_rampup),  # type: ignore[arg-type]
                        "timestamp": tick_end_time,
                    })
                    if dev.type == "cuda":
                        row["gpu_mem_gb"] = torch.cuda.max_memory_allocated(dev) / 2 ** 30
                        torch.cuda.reset_peak_memory_stats(dev)
                    rep.log(f"tick {cur_tick:<5d} kimg {cur_nimg / 1000:<8.3f} step {step:<7d} "
                            f"time {format_time(row['total_sec']):<12s} sec/tick {tick_sec:<7.1f} "
                            f"sec/kimg {row['sec_per_kimg']:<7.2f} maintenance {maintenance:<5.1f} "
                            + " ".join(f"{k} {sums[k] / counts[k]:.4f}" for k in sums))
                    rep.write_stats(row)
                    sums, counts = {}, {}
                    if done or stop_now or cur_tick % int(opts.snap) == 0:  # type: ignore[arg-type]
                        last_snapshot = snapshot() or last_snapshot
                    rep.plot_curves(metric_history)
                    tick_start_nimg = timed_nimg = cur_nimg
                    tick_start_time = time.time()
                    maintenance = tick_start_time - tick_end_time
                    if stop_now:
                        status = "interrupted"
                        break
                    if done:
                        break
        except KeyboardInterrupt:
            # A raw interrupt (second Ctrl-C, or raised inside a step): save what there is, without collectives,
            # since the other ranks may be anywhere. The step in flight is lost; resume is then not bit-exact.
            status = "interrupted"
            rep.log("\nInterrupted: writing a snapshot of the last completed step")
            last_snapshot = snapshot(collective=False) or last_snapshot
        if status == "interrupted":
            rep.log(f"Stopped at kimg {cur_nimg / 1000:.3f} (step {step}). Resume with: "
                    f"leangen train --resume {run_dir}")
        else:
            rep.log(f"Done: kimg {cur_nimg / 1000:.3f}, step {step}, {format_time(time.time() - start_time)}. "
                    f"Latest snapshot: {last_snapshot}")
        return TrainResult(run_dir, last_snapshot, status, cur_nimg, step)


def _reals(dataset: Dataset, n: int, seed: int) -> torch.Tensor:
    """A fixed random selection of training images for ``reals.png`` (its own generator: no global RNG use)."""
    total = len(dataset)  # type: ignore[arg-type]
    idx = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:n].tolist()
    images = torch.stack([_image(dataset[i]) for i in idx])
    return images.float() / 127.5 - 1 if images.dtype == torch.uint8 else images.float()


def _load_metrics(names: list[str]) -> tuple[Any, Any] | None:
    """``(calc_metrics, report_metric)`` when metrics are requested; ``ValueError`` when unavailable or unknown."""
    if not names:
        return None
    import importlib

    try:
        reg = importlib.import_module("leangen.metrics.registry")
        calc_metrics, report_metric = reg.calc_metrics, reg.report_metric
    except (ImportError, AttributeError) as e:
        raise ValueError(f"--metrics {','.join(names)} needs leangen.metrics ({e}); pass --metrics none") from None
    known = getattr(reg, "METRICS", None) or getattr(reg, "_METRICS", None)
    if isinstance(known, dict):
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"unknown metric(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return calc_metrics, report_metric


def train(options: TrainOptions, dataset: Dataset | None = None) -> TrainResult:
    """Train as ``options`` say (see ``TrainOptions``); returns where the run and its last snapshot are."""
    return TrainingLoop(options, dataset).run()
