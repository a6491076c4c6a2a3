"""Device resolution: ``auto``, ``cpu``, ``cuda`` or ``cuda:i`` -> an *indexed* ``torch.device``.

CUDA devices always carry an index (``torch.cuda.set_device`` and NCCL reject an index-less one): plain ``cuda`` and
``auto`` mean ``cuda:LOCAL_RANK`` under torchrun and the current CUDA device otherwise.
"""
from __future__ import annotations

import os

import torch

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """Turn a user device string (or device) into an indexed ``torch.device``.

    Raises ``ValueError`` with a readable message for unknown strings or a CUDA device that is absent.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    text = (spec or "auto").strip().lower()
    if text == "auto":
        return _cuda(None) if torch.cuda.is_available() else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {text!r} requested but CUDA is not available on this machine; use --device cpu")
        index = text.partition(":")[2]
        if index and not index.isdigit():
            raise ValueError(f"unknown device {text!r}; expected {DEVICE_CHOICES}")
        return _cuda(int(index) if index else None)
    raise ValueError(f"unknown device {text!r}; expected {DEVICE_CHOICES}")


def _cuda(index: int | None) -> torch.device:
    count = torch.cuda.device_count()
    if index is None:
        local = os.environ.get("LOCAL_RANK")
        index = int(local) if local is not None and local.isdigit() else torch.cuda.current_device()
    if index >= count:
        raise ValueError(f"device 'cuda:{index}' requested but only {count} CUDA device(s) exist")
    return torch.device("cuda", index)


def device_name(device: torch.device) -> str:
    """A human name of the hardware behind ``device`` (GPU model, or the CPU's model string)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from leangen.utils.cpu import cpu_name

    return cpu_name()
