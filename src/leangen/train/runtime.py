"""Where and how this process trains: its execution policy (device, precision, TF32, determinism) and the
``torchrun`` process group, as objectives see them (``autocast``, ``reduce_grads``, ``all_reduce_mean``)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from leangen.execution import ExecutionPolicy


@dataclass
class Runtime:
    """Where and how this process trains. Objectives use ``autocast``, ``reduce_grads`` and ``all_reduce_mean``."""

    policy: ExecutionPolicy
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_process_group: bool = False
    scalers: dict[int, Any] = field(default_factory=dict)
    _host_group: Any = None

    def __post_init__(self) -> None:
        if isinstance(self.policy, torch.device):  # Runtime(torch.device("cpu")): the default policy there
            self.policy = ExecutionPolicy(self.policy)

    def grad_scaler(self, opt: torch.optim.Optimizer) -> Any:
        """The fp16 gradient scaler of ``opt`` (one per optimizer), None for fp32 and bf16."""
        if self.policy.precision != "fp16":
            return None
        if id(opt) not in self.scalers:
            self.scalers[id(opt)] = self.policy.grad_scaler()
        return self.scalers[id(opt)]

    @property
    def device(self) -> torch.device:
        return self.policy.device

    @property
    def amp(self) -> bool:
        """Whether autocast is on (bf16 or fp16)."""
        return self.policy.precision != "fp32"

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self) -> Any:
        """Autocast to the policy's precision (bf16/fp16), a no-op for fp32."""
        return self.policy.autocast()

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

    def any_rank(self, *flags: bool) -> list[bool]:
        """For each host-side flag, whether any rank set it. A CPU collective (gloo, also beside NCCL), so agreeing
        on "stop now" every step never waits for the device."""
        if not self.distributed:
            return [bool(f) for f in flags]
        if self._host_group is None:  # made on first use, which every rank reaches at the same step
            self._host_group = (dist.group.WORLD if dist.get_backend() == "gloo"
                                else dist.new_group(backend="gloo"))
        t = torch.tensor([float(f) for f in flags])
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self._host_group)
        return [v > 0 for v in t.tolist()]

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


def setup_runtime(policy: ExecutionPolicy | str | torch.device = "auto", amp: bool | None = None) -> Runtime:
    """Read the torchrun environment, place this process on its device, activate the policy and join the process
    group (NCCL on GPU, gloo on CPU).

    ``policy``: an ``ExecutionPolicy`` or a device spec (``auto``, ``cuda``, ...; then ``amp`` picks bf16). Under
    torchrun with several processes each process takes ``cuda:LOCAL_RANK``.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not isinstance(policy, ExecutionPolicy):
        policy = ExecutionPolicy.create(policy, precision="bf16" if amp else "fp32")
    if policy.device.type == "cuda" and world_size > 1:
        policy = policy.with_device(f"cuda:{local_rank}")  # one GPU per process
    policy.activate()
    owns = False
    if world_size > 1 and not dist.is_initialized():
        # Metrics run on rank 0 only while the others wait in the next collective: allow for that.
        dist.init_process_group("nccl" if policy.device.type == "cuda" else "gloo", rank=rank, world_size=world_size,
                                timeout=timedelta(minutes=60), device_id=policy.device if policy.device.type == "cuda"
                                else None)
        owns = True
    return Runtime(policy, rank, world_size, local_rank, owns_process_group=owns)
