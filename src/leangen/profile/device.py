"""What the profiled device is and has: its name, the memory free on it, and a synchronization point."""
from __future__ import annotations

from pathlib import Path

import torch

from leangen.execution.device import device_name

__all__ = ["available_bytes", "device_name", "sync"]


def available_bytes(device: torch.device) -> int | None:
    """Memory a new model may use on ``device`` now (None when unknown)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def sync(device: torch.device) -> None:
    """Wait for queued kernels on ``device`` (CUDA runs asynchronously; the CPU needs nothing)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
