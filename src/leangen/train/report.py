"""What a run reports: console + ``log.txt``, ``stats.jsonl``, TensorBoard scalars, ``curves.png``, progress bar.

Only rank 0 reports; other ranks get a ``Reporter`` with ``enabled=False`` whose methods do nothing.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from leangen.utils.files import atomic_path


def read_stats(path: Path) -> tuple[list[dict[str, Any]], str | None]:
    """Rows of ``stats.jsonl`` and a note when a torn last line was dropped.

    A crash or a full disk can leave the last row half written; that row is cut from the file (so the next append
    starts on a clean line) and the note says so. A bad row anywhere else is real damage: ``ValueError`` naming it.
    """
    data = path.read_bytes()
    lines = data.split(b"\n")
    rows: list[dict[str, Any]] = []
    last = max((n for n, line in enumerate(lines, 1) if line.strip()), default=0)
    offset = 0  # byte position of the current line
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as e:
                if number != last:
                    raise ValueError(f"{path}: line {number} is not valid JSON ({e}); fix or delete that line "
                                     f"to resume") from None
                with open(path, "r+b") as f:
                    f.truncate(offset)
                return rows, (f"dropped the half-written last line of {path} ({len(line)} bytes, from a crash or a "
                              f"full disk)")
        offset += len(line) + 1
    if data and not data.endswith(b"\n"):  # a complete row whose newline was not written: finish the line
        with open(path, "ab") as f:
            f.write(b"\n")
    return rows, None


class Reporter:
    """Rank 0's outputs. ``run_dir=None`` prints only (no files)."""

    def __init__(self, run_dir: Path | None, enabled: bool = True, progress: bool = True) -> None:
        self.run_dir, self.enabled = run_dir, enabled
        self.history: list[dict[str, Any]] = []  # stats.jsonl rows, for curves.png
        self._log = None
        self._tb: Any = None
        self._bar: Any = None
        self._task: Any = None
        self._console: Any = None
        self.want_progress = enabled and progress and sys.stderr.isatty()
        if not enabled or run_dir is None:
            return
        self._log = open(run_dir / "log.txt", "a", buffering=1, encoding="utf-8")
        stats = run_dir / "stats.jsonl"
        if stats.is_file():
            self.history, note = read_stats(stats)
            if note:
                self.log(f"note: {note}")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(run_dir))
        except Exception:  # tensorboard is optional: the JSON lines hold the same numbers
            self._tb = None

    # -- console + log.txt ----------------------------------------------------------------------------------------
    def log(self, message: str, err: bool = False) -> None:
        if not self.enabled:
            return
        if self._console is not None:
            self._console.print(message, markup=False, highlight=False)
        else:
            print(message, file=sys.stderr if err else sys.stdout, flush=True)
        if self._log is not None:
            self._log.write(message + "\n")

    # -- stats.jsonl / tensorboard / curves.png ---------------------------------------------------------------------
    def truncate_stats(self, max_step: int) -> None:
        """On resume: drop rows written after the snapshot (they belong to the abandoned continuation)."""
        if not self.enabled or self.run_dir is None:
            return
        keep = [r for r in self.history if r.get("step", 0) <= max_step]
        if len(keep) != len(self.history):
            self.history = keep
            with atomic_path(self.run_dir / "stats.jsonl") as tmp:
                tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))

    def write_stats(self, row: dict[str, Any]) -> None:
        if not self.enabled or self.run_dir is None:
            return
        self.history.append(row)
        with open(self.run_dir / "stats.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        if self._tb is not None:
            nimg = int(round(row["kimg"] * 1000))
            for k, v in row.items():
                if k not in ("tick", "kimg", "step", "timestamp") and isinstance(v, (int, float)):
                    self._tb.add_scalar(k.replace("_", "/", 1) if k.startswith(("loss_", "D_")) else k, v, nimg)
            self._tb.flush()

    def plot_curves(self, metrics: dict[str, list[tuple[float, float]]] | None = None) -> None:
        """Rewrite ``curves.png``: every loss/statistic per tick vs kimg, plus metric values."""
        if not self.enabled or self.run_dir is None or not self.history:
            return
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        skip = {"tick", "kimg", "step", "timestamp", "total_sec", "sec_per_tick", "sec_per_kimg", "img_per_sec",
                "maintenance_sec", "cpu_mem_gb", "gpu_mem_gb", "ema_beta"}
        keys = sorted({k for r in self.history for k, v in r.items() if k not in skip and isinstance(v, (int, float))})
        panels: list[tuple[str, Sequence[str]]] = [("losses", [k for k in keys if k.startswith("loss")]),
                                                   ("other statistics", [k for k in keys if not k.startswith("loss")])]
        panels = [p for p in panels if p[1]]
        if metrics:
            panels.append(("metrics", list(metrics)))
        fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.6 * len(panels)), squeeze=False, sharex=True)
        for ax, (title, names) in zip(axes[:, 0], panels):
            for name in names:
                if metrics and title == "metrics":
                    xs, ys = zip(*metrics[name]) if metrics[name] else ((), ())
                    ax.plot(xs, ys, marker="o", label=name)
                else:
                    pts = [(r["kimg"], r[name]) for r in self.history if name in r]
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], label=name)
            ax.set_title(title, fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="best")
        axes[-1, 0].set_xlabel("kimg")
        fig.tight_layout()
        with atomic_path(self.run_dir / "curves.png") as tmp:
            fig.savefig(tmp, format="png", dpi=90)
        plt.close(fig)

    # -- progress bar -------------------------------------------------------------------------------------------------
    def start_progress(self, total: float, completed: float, unit: str) -> None:
        """A rich progress bar over ``total`` kimg or steps (only on a TTY and when wanted)."""
        if not self.want_progress:
            return
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self._console = Console(stderr=True)
        cols: list[Any] = [TextColumn("[bold]train"), BarColumn(bar_width=24),
                           MofNCompleteColumn() if unit == "step" else TextColumn("{task.completed:.1f}/{task.total:.0f} kimg"),
                           TextColumn("{task.fields[speed]}"), TimeElapsedColumn(), TextColumn("ETA"),
                           TimeRemainingColumn(), TextColumn("{task.fields[losses]}")]
        self._bar = Progress(*cols, console=self._console, transient=False, refresh_per_second=4)
        self._bar.start()
        self._task = self._bar.add_task("train", total=total, completed=completed, speed="", losses="")
        self._last = (time.perf_counter(), completed)

    def update_progress(self, completed: float, losses: dict[str, float], steps_per_sec: float | None) -> None:
        if self._bar is None:
            return
        # Only the losses: the full set of statistics is in the tick lines, and the bar must fit 80 columns.
        text = " ".join(f"{k} {v:.3g}" for k, v in losses.items() if k.startswith("loss"))
        speed = f"{steps_per_sec:.2f} it/s" if steps_per_sec else ""
        self._bar.update(self._task, completed=completed, losses=text, speed=speed)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        self._console = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._log is not None:
            self._log.close()
            self._log = None
