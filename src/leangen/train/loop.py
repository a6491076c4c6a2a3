"""The training loop: one flat loop, shared by every task and objective.

Per step: next ``Batch`` -> ``objective.train_step`` -> statistics added up on the device -> EMA update ->
counters; nothing is read back from the device, so the host runs ahead of the GPU. Every ``tick`` kimg: the
statistics are read once (one all-reduce; a non-finite value stops the run before any snapshot of that tick), a
progress line, ``stats.jsonl``, TensorBoard, ``curves.png``. Every ``snap`` ticks, at the end and on Ctrl-C: a
sample grid, metrics and an atomic snapshot (``leangen.train.snapshot``).

What differs between models lives elsewhere: the task (``leangen.tasks``: splits, batch, previews, default
metrics) and the objective (``leangen.train.objective``: modules and their roles, optimizers, one step). The loop
has no special case for any of them.

Distributed training is data parallel over ``torchrun`` processes (``RANK``/``WORLD_SIZE``/``LOCAL_RANK``): each
rank takes ``batch / world_size`` items of a shared permutation, objectives average gradients through
``Runtime.reduce_grads`` before each optimizer step (an explicit all-reduce, like StyleGAN3, rather than a
``DistributedDataParallel`` wrapper, because GAN phases call ``G.map``/``G.synthesis`` separately and R1 needs
double backward). Only rank 0 writes files.

Resuming (``--resume``) restores weights, optimizer moments, counters, every rank's RNG states and the data
position (``leangen.train.resume``), so on the CPU a run stopped and resumed ends with the same bits as one that
never stopped.
"""
from __future__ import annotations

import dataclasses
import random
import resource
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Dataset

from leangen import runs
from leangen.execution import ExecutionPolicy
from leangen.models.pretrained import capability, model_label
from leangen.tasks import get_task
from leangen.train.data import BatchStream
from leangen.train.ema import ema_beta, update_ema
from leangen.train.objective import Objective, get_objective
from leangen.train.options import TrainOptions, read_run_options, resolve_options
from leangen.train.report import Reporter
from leangen.train.resume import RunState, restore, seed_fresh
from leangen.train.runtime import Runtime, setup_runtime
from leangen.train.stepstats import NonFinite, TickStats
from leangen.train.stop import StopFlag
from leangen.train.snapshot import NonFiniteLossError, SnapshotWriter, TrainingError, check_metrics, save_grid
from leangen.utils.files import write_json_atomic
from leangen.utils.timefmt import format_time

__all__ = ["NonFiniteLossError", "TrainResult", "TrainingError", "TrainingLoop", "ema_beta", "train", "update_ema"]


@dataclass
class TrainResult:
    run_dir: Path
    snapshot: Path | None      # the last snapshot written (None if none)
    status: str                # "done" | "interrupted" | "aborted"
    cur_nimg: int
    step: int


class TrainingLoop:
    """``TrainingLoop(options, dataset=None).run()``; ``dataset`` overrides ``options.data`` (in-memory tests, API use).

    ``dataset`` items are as ``leangen.data.batch`` describes: uint8 ``[3, R, R]`` images, ``(image, label)``
    tuples or ``{"image", "condition"}`` pairs.
    """

    def __init__(self, options: TrainOptions, dataset: Dataset | None = None,
                 policy: ExecutionPolicy | None = None) -> None:
        self.options = options
        self.dataset = dataset
        self.policy = policy  # the caller's resolved policy (the CLI's); else built from the options

    def run(self) -> TrainResult:
        o = self.options
        try:
            policy = self.policy or ExecutionPolicy.create(o.device, precision=o.precision or ("bf16" if o.amp else "fp32"),
                                            tf32=o.tf32, deterministic=o.deterministic)
        except ValueError as e:
            raise TrainingError(str(e)) from None
        rt = setup_runtime(policy)
        try:
            return self._run(rt)
        finally:
            if rt.owns_process_group and dist.is_initialized():
                dist.destroy_process_group()

    # -- set-up -----------------------------------------------------------------------------------------------------
    def _run(self, rt: Runtime) -> TrainResult:
        from leangen.presets import get_preset

        # 1. Options, resolved against the run being resumed and the preset.
        notes: list[str] = []
        resume_run, resume_snap, stored = None, None, None
        if self.options.resume:
            with warnings.catch_warnings(record=True) as caught:  # e.g. "passed over a damaged snapshot"
                warnings.simplefilter("always")
                resume_run, resume_snap = runs.resolve_resume(self.options.resume, self.options.outdir or "runs")
            notes.extend(f"note: {w.message}" for w in caught)
            stored = read_run_options(resume_run)
        opts = resolve_options(self.options, stored)
        if opts.precision != rt.policy.precision:  # the resumed run's precision
            rt.policy = dataclasses.replace(rt.policy, precision=opts.precision).activate()  # type: ignore[arg-type]
        preset = get_preset(opts.preset)  # type: ignore[arg-type]
        task = get_task(preset.task)
        batch = int(opts.batch)  # type: ignore[arg-type]
        if batch % rt.world_size:
            raise ValueError(f"--batch {batch} is not divisible by the {rt.world_size} processes")
        check_metrics(list(opts.metrics or []))  # unknown names fail before any work

        # 2. Networks and optimizers: seeded identically on every rank, then rank 0's copy wins anyway.
        seed = int(opts.seed)  # type: ignore[arg-type]
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        objective: Objective = get_objective(preset.objective)()
        objective.build(preset, rt, opts)
        for m in objective.modules().values():  # the policy's activation layout (channels_last) where a model takes one
            rt.policy.prepare(m)
            rt.broadcast_module(m)
        resolution = int(capability(objective.eval_model(), "img_resolution") or preset.resolution)

        # 3. Data. Rank 0 first: a built-in dataset is rendered and cached on first use, once.
        if not rt.is_main:
            rt.barrier()
        data = task.open(self.dataset if self.dataset is not None else opts.data, resolution,
                         name=Path(str(opts.data)).stem)
        if rt.is_main:
            rt.barrier()
        if opts.metrics:  # a metric the data cannot feed (fid10 on one image) fails now, not at the first snapshot
            from leangen.metrics.registry import plan_metrics

            plan_metrics(list(opts.metrics), objective.eval_model(), data.metric_data, **objective.metric_kwargs())
        if len(data.train) < 2:
            notes.append(f"warning: the training split has {len(data.train)} item(s); the model will memorise it")

        # 4. Run directory: the resumed one, or the next free id (decided by rank 0).
        if resume_run is not None:
            run_dir = resume_run
        else:
            run_dir = rt.broadcast_object(runs.new_run_dir(opts.outdir, f"{opts.preset}-{data.name}")  # type: ignore[arg-type]
                                          if rt.is_main else None)
        rep = Reporter(run_dir if rt.is_main else None, enabled=rt.is_main, progress=opts.progress)
        for note in notes:
            rep.log(note)
        try:
            return _Run(rt, opts, preset, task, objective, data, run_dir, resume_snap, rep, batch, seed).train()
        except TrainingError as e:
            rep.log(f"error: {e}", err=True)
            raise
        except Exception as e:  # keep the reason in log.txt too; the traceback goes to the caller
            rep.log(f"error: {type(e).__name__}: {e}", err=True)
            raise
        finally:
            rep.close()


class _Run:
    """One invocation of the loop over a set-up run (state shared by the loop body and its snapshots)."""

    def __init__(self, rt: Runtime, opts: TrainOptions, preset: Any, task: Any, objective: Objective, data: Any,
                 run_dir: Path, resume_snap: Path | None, rep: Reporter, batch: int, seed: int) -> None:
        self.rt, self.opts, self.preset, self.task, self.objective = rt, opts, preset, task, objective
        self.data, self.run_dir, self.resume_snap, self.rep = data, run_dir, resume_snap, rep
        self.batch, self.seed = batch, seed
        self.total_nimg = None if opts.kimg is None else int(round(float(opts.kimg) * 1000))
        self.total_steps = opts.steps

    def finished(self, s: RunState) -> bool:
        return ((self.total_steps is not None and s.step >= self.total_steps)
                or (self.total_nimg is not None and s.cur_nimg >= self.total_nimg))

    def _write_options(self, s: RunState) -> None:
        rt, opts, modules = self.rt, self.opts, self.objective.modules()
        doc = opts.to_dict()
        doc["run"] = {
            "run_dir": str(self.run_dir), "task": self.task.name, "objective": self.objective.name,
            "entry": self.objective.entry, "roles": self.objective.roles(), "world_size": rt.world_size,
            "batch_per_process": self.batch // rt.world_size, "device": str(rt.device), "amp": rt.amp,
            "execution": rt.policy.record(),
            "dataset_name": self.data.name, "dataset_size": len(self.data.train),
            "validation_size": len(self.data.val),
            "components": {k: {"model_type": model_label(m), "config": capability(m, "config")}
                           for k, m in modules.items()},
            "params": {k: sum(p.numel() for p in m.parameters()) for k, m in modules.items()},
            "resumed_from": str(self.resume_snap) if self.resume_snap else None,
            "torch": torch.__version__,
        }
        write_json_atomic(self.run_dir / "training_options.json", doc)
        if self.resume_snap is None:
            import json

            self.rep.log("Training options:\n" + json.dumps(opts.to_dict(), indent=2))
            self.rep.log(f"\nRun directory: {self.run_dir}")
        params = ", ".join(f"{k} {v / 1e6:.2f}M" for k, v in doc["run"]["params"].items())
        self.rep.log(f"{self.preset.name} ({params}) on {self.data.name} ({len(self.data.train)} training items), "
                     f"{rt.policy.describe()}, {rt.world_size} process(es), batch {self.batch} "
                     f"({self.batch // rt.world_size}/process)")

    def train(self) -> TrainResult:
        rt, opts, objective, rep, run_dir = self.rt, self.opts, self.objective, self.rep, self.run_dir
        dev = rt.device
        modules, optimizers = objective.modules(), objective.optimizers()

        # 5. Counters and state: fresh, or everything restored from the snapshot.
        if self.resume_snap is not None:
            s = restore(self.resume_snap, objective, preset=str(opts.preset), rt=rt, batch=self.batch,
                        seed=self.seed, log=rep.log)
        else:
            s = RunState()
            seed_fresh(rt, self.seed)
        rt.barrier()  # every rank has read the snapshot before rank 0 touches the run directory

        self.writer = writer = SnapshotWriter(rt=rt, run_dir=run_dir, objective=objective, task=self.task,
                                              data=self.data,
                                preset=str(opts.preset), metrics=list(opts.metrics or []), keep=int(opts.keep),  # type: ignore[arg-type]
                                preview=self.task.preview_inputs(self.data, int(opts.grid)),  # type: ignore[arg-type]
                                log=rep.log)

        # 6. Files (rank 0): options, reals and the initial preview.
        if rt.is_main:
            runs.clean_partial(run_dir)
            if self.resume_snap is not None:
                for moved in runs.set_aside_newer(run_dir, self.resume_snap):
                    rep.log(f"note: {moved.name[len('superseded-'):]} is newer than the resumed snapshot; kept as {moved}")
                rep.truncate_stats(s.step)
                rep.log(f"\nResuming {run_dir} from {self.resume_snap.name} (kimg {s.cur_nimg / 1000:.3f}, "
                        f"step {s.step})")
            self._write_options(s)
            if self.resume_snap is None:
                save_grid(self.task.reals(self.data, int(opts.grid), self.seed), run_dir / "reals.png")  # type: ignore[arg-type]
                if self.task.preview_at_start:
                    writer.preview(run_dir / "fakes_init.png")
        if self.finished(s):
            rep.log(f"Nothing to do: the run is already at kimg {s.cur_nimg / 1000:.3f} (step {s.step}); "
                    f"pass a larger --kimg/--steps to continue")
            return TrainResult(run_dir, self.resume_snap, "done", s.cur_nimg, s.step)

        # 7. The loop: steps that never read the device, and a tick that reads everything once.
        self.s, self.start_time = s, time.time() - s.total_time
        self.stream = BatchStream(self.data.train, self.batch // rt.world_size, seed=self.seed, rank=rt.rank,
                                  world_size=rt.world_size, mirror=bool(opts.mirror), workers=int(opts.workers),  # type: ignore[arg-type]
                                  device=dev, position=s.data_position)
        self.ema = [(modules[tgt], modules[src]) for tgt, src in objective.ema_pairs().items()]
        self.tick_nimg = int(round(float(opts.tick) * 1000))  # type: ignore[arg-type]
        self.stats = TickStats()
        self.last_means: dict[str, float] = {}
        self.last_snapshot = self.resume_snap
        status = "done"
        deadline = None if opts.minutes is None else time.time() + float(opts.minutes) * 60  # this invocation's budget
        self.tick_start_time = time.time()
        self.timed_nimg = s.cur_nimg  # images since tick_start_time (after a resume, less than since tick_start_nimg)
        self.maintenance = 0.0
        self.step_time: float | None = None
        self.first_batch = True
        if self.total_steps is not None:
            rep.start_progress(self.total_steps, s.step, "step")
        else:
            rep.start_progress(self.total_nimg / 1000, s.cur_nimg / 1000, "kimg")  # type: ignore[operator]
        rep.log(f"Training for {f'{self.total_steps} steps' if self.total_steps is not None else f'{opts.kimg} kimg'}...")

        stop = StopFlag(lambda sig: rep.log(f"\n{sig} received: finishing this step, then writing a snapshot "
                                             f"(press Ctrl-C again to abort without one)"))
        try:
            with stop:
                while True:
                    self._step()
                    # Host-side flags only (agreed over ranks by a CPU collective): stopping never waits for the GPU.
                    stop_now, time_up = rt.any_rank(stop.requested, deadline is not None and time.time() >= deadline)
                    done = self.finished(s) or time_up
                    if time_up and not self.finished(s) and rt.is_main:
                        rep.log(f"\nTime budget of {opts.minutes:g} min reached at kimg {s.cur_nimg / 1000:.3f}")
                    if not done and not stop_now and s.cur_nimg < s.tick_start_nimg + self.tick_nimg:
                        continue
                    self._tick(snap=done or stop_now)
                    if stop_now:
                        status = "interrupted"
                        break
                    if done:
                        break
        except KeyboardInterrupt:
            if stop.aborted:
                # Second Ctrl-C: the user asked to abort without a snapshot, so none is written.
                status = "aborted"
                rep.log(f"\nAborted at step {s.step} without a snapshot. Last snapshot: "
                        f"{runs.latest_snapshot(run_dir) or 'none'}")
            else:
                # A raw interrupt raised inside a step (no handler could be installed): save what there is, without
                # collectives, since the other ranks may be anywhere. Resume is then not bit-exact.
                status = "interrupted"
                rep.log("\nInterrupted: writing a snapshot of the last completed step")
                self._check_finite(self.stats.read(rt, collective=False)[1])
                self.last_snapshot = self._snapshot(collective=False) or self.last_snapshot
        if status in ("interrupted", "aborted"):
            rep.log(f"Stopped at kimg {s.cur_nimg / 1000:.3f} (step {s.step}). Resume with: "
                    f"leangen train --resume {run_dir}")
        else:
            rep.log(f"Done: kimg {s.cur_nimg / 1000:.3f}, step {s.step}, {format_time(time.time() - self.start_time)}. "
                    f"Latest snapshot: {self.last_snapshot}")
        return TrainResult(run_dir, self.last_snapshot, status, s.cur_nimg, s.step)

    def _step(self) -> None:
        """One optimizer step: batch, objective step, statistics on the device, EMA, counters. Reads no device value
        (after the first batch, whose shape and labels are checked once)."""
        s, opts, objective = self.s, self.opts, self.objective
        t_step = time.perf_counter()
        batch = self.stream.next()
        if self.first_batch:
            self.task.check_batch(batch, objective.eval_model())
            self.first_batch = False
        self.stats.add(objective.train_step(batch, s.step), s.step)
        beta = ema_beta(self.batch, s.cur_nimg, float(opts.ema_kimg), opts.ema_rampup)  # type: ignore[arg-type]
        for ema_m, src_m in self.ema:
            update_ema(ema_m, src_m, beta)
        s.step += 1
        s.cur_nimg += self.batch
        dt = time.perf_counter() - t_step  # the host's pace: on a GPU it runs ahead of the device until a tick
        self.step_time = dt if self.step_time is None else 0.9 * self.step_time + 0.1 * dt
        self.rep.update_progress(s.step if self.total_steps is not None else s.cur_nimg / 1000, self.last_means,
                                 1 / max(self.step_time, 1e-9))

    def _check_finite(self, bad: NonFinite | None) -> None:
        """Stop without a snapshot when a statistic of this tick was not finite."""
        if bad is None:
            return
        s = self.s
        at = (f"at step {bad.step} (kimg {(s.cur_nimg - (s.step - bad.step) * self.batch) / 1000:.3f})"
              if bad.step >= 0 else f"on another process by step {s.step - 1}")
        last = runs.latest_snapshot(self.run_dir)
        raise NonFiniteLossError(
            f"{bad.name} became {bad.value} {at}; stopped without writing a snapshot. Last good snapshot: "
            f"{last or 'none (no snapshot was written yet)'}. "
            + (f"Try a lower learning rate (--hparam lr=...) and resume: leangen train --resume {last}"
               if last else "Try a lower learning rate (--hparam lr=...)."))

    def _snapshot(self, collective: bool = True) -> Path | None:
        s, opts, rt, objective, stream = self.s, self.opts, self.rt, self.objective, self.stream
        s.total_time = time.time() - self.start_time
        s.data_position = stream.position
        base = {
            "format": runs.STATE_FORMAT, "preset": opts.preset, "objective": objective.name,
            "task": self.task.name, "cur_nimg": s.cur_nimg, "step": s.step, "tick": s.tick,
            "tick_start_nimg": s.tick_start_nimg, "total_time": s.total_time, "batch": self.batch,
            "world_size": rt.world_size,
            "data": {"position": stream.position, "seed": self.seed, "mirror": bool(opts.mirror),
                     "dataset_size": len(self.data.train)},
            "optimizers": {k: o.state_dict() for k, o in objective.optimizers().items()},
            "objective_state": objective.state_dict(),
        }
        return self.writer.write(s, base, collective=collective)

    def _tick(self, snap: bool) -> None:
        """Read the tick's statistics (the one device read), stop on a non-finite one, report, maybe snapshot.
        The tick start advances *before* the snapshot records it."""
        s, opts, rt, rep = self.s, self.opts, self.rt, self.rep
        means, bad = self.stats.read(rt)
        self._check_finite(bad)
        self.stats, self.last_means = TickStats(), means
        s.tick += 1
        s.tick_start_nimg = s.cur_nimg
        tick_end_time = time.time()
        tick_sec = tick_end_time - self.tick_start_time
        tick_kimg = (s.cur_nimg - self.timed_nimg) / 1000
        row: dict[str, Any] = {"tick": s.tick, "kimg": s.cur_nimg / 1000, "step": s.step}
        row.update(means)
        row.update({
            "total_sec": tick_end_time - self.start_time, "sec_per_tick": tick_sec,
            "sec_per_kimg": tick_sec / max(tick_kimg, 1e-9),
            "img_per_sec": tick_kimg * 1000 / max(tick_sec, 1e-9), "maintenance_sec": self.maintenance,
            "cpu_mem_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20,
            "ema_beta": ema_beta(self.batch, s.cur_nimg, float(opts.ema_kimg), opts.ema_rampup),  # type: ignore[arg-type]
            "timestamp": tick_end_time,
        })
        if rt.device.type == "cuda":
            row["gpu_mem_gb"] = torch.cuda.max_memory_allocated(rt.device) / 2 ** 30
            torch.cuda.reset_peak_memory_stats(rt.device)
        rep.log(f"tick {s.tick:<5d} kimg {s.cur_nimg / 1000:<8.3f} step {s.step:<7d} "
                f"time {format_time(row['total_sec']):<12s} sec/tick {tick_sec:<7.1f} "
                f"sec/kimg {row['sec_per_kimg']:<7.2f} maintenance {self.maintenance:<5.1f} "
                + " ".join(f"{k} {v:.4f}" for k, v in means.items()))
        rep.write_stats(row)
        if snap or s.tick % int(opts.snap) == 0:  # type: ignore[arg-type]
            self.last_snapshot = self._snapshot() or self.last_snapshot
        rep.plot_curves(self.writer.history)
        self.timed_nimg = s.cur_nimg
        self.tick_start_time = time.time()
        self.maintenance = self.tick_start_time - tick_end_time


def train(options: TrainOptions, dataset: Dataset | None = None, policy: ExecutionPolicy | None = None
          ) -> TrainResult:
    """Train as ``options`` say (see ``TrainOptions``); returns where the run and its last snapshot are."""
    return TrainingLoop(options, dataset, policy).run()
