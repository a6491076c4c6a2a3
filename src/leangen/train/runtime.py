"""Where and how this process trains: device, bf16 autocast and the ``torchrun`` process group, as objectives see
them (``autocast``, ``reduce_grads``, ``all_reduce_mean``)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from leangen.utils.device import resolve_device


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
