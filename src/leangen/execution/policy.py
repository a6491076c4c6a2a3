"""The execution policy: where and how leangen computes — device, precision, TF32, memory format, determinism and
compilation — decided once per process and passed down as one object.

Every verb builds an :class:`ExecutionPolicy` from its options (``leangen.cli.common.execution_options``), calls
:meth:`ExecutionPolicy.activate` (which sets PyTorch's process-wide switches), and hands the policy to whatever it
runs. Records (metrics, profiles, benchmarks, training options) carry :meth:`ExecutionPolicy.record`.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Literal

import torch
from torch import nn

from leangen.execution.device import device_name, resolve_device

Precision = Literal["fp32", "bf16", "fp16"]
CompileMode = Literal["off", "compile", "cudagraphs"]
PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
COMPILE_MODES = ("off", "compile", "cudagraphs")

_ACTIVE: list["ExecutionPolicy"] = []


@dataclass(frozen=True)
class ExecutionPolicy:
    """How this process computes.

    device: an indexed ``torch.device`` (see :func:`resolve_device`).
    precision: ``fp32``; ``bf16`` or ``fp16`` autocast (weights stay fp32; fp16 training uses a gradient scaler).
    tf32: TF32 matrix and cuDNN math on CUDA (ignored on the CPU). ``None`` means on unless ``deterministic``.
    channels_last: channels-last activations for the convolutional generators that support them (values unchanged).
    deterministic: reproducible GPU runs where PyTorch allows it: TF32 off, cuDNN deterministic and not
        benchmarking, ``torch.use_deterministic_algorithms`` (warn-only for ops without a deterministic kernel).
    compile: ``off`` (eager), ``compile`` (``torch.compile``, inductor) or ``cudagraphs`` (inductor with CUDA graphs,
        ``mode="reduce-overhead"``); applied through :func:`leangen.execution.compile.guarded_compile`, which falls
        back to eager and says why.
    na_backend: the neighborhood-attention backend to set on the models this policy loads (None: the model's own
        ``na_backend``, recorded in its config); checked where it is applied (``leangen.ops.neighborhood``).
    """

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    precision: Precision = "fp32"
    tf32: bool | None = None
    channels_last: bool = True
    deterministic: bool = False
    compile: CompileMode = "off"
    na_backend: str | None = None

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; expected one of {', '.join(PRECISIONS)}")
        if self.compile not in COMPILE_MODES:
            raise ValueError(f"unknown compile mode {self.compile!r}; expected one of {', '.join(COMPILE_MODES)}")
        if self.device.type == "cuda" and self.device.index is None:  # e.g. torch.device("cuda") from the API
            object.__setattr__(self, "device", resolve_device(self.device))
        if self.compile == "cudagraphs" and self.device.type != "cuda":
            raise ValueError("--compile cudagraphs needs a CUDA device")
        if self.deterministic and self.tf32:
            raise ValueError("--deterministic turns TF32 off; do not combine it with --tf32")

    @classmethod
    def create(cls, device: str | torch.device | None = "auto", precision: str = "fp32", tf32: bool | None = None,
               channels_last: bool = True, deterministic: bool = False, compile: str = "off",
               na_backend: str | None = None) -> "ExecutionPolicy":
        """A validated policy; ``device`` as :func:`resolve_device` takes it. ``ValueError`` names a bad option."""
        return cls(resolve_device(device), precision, tf32, channels_last, deterministic, compile,  # type: ignore[arg-type]
                   na_backend)

    # -- what it decides ----------------------------------------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        """The compute dtype autocast runs in (``torch.float32`` when off)."""
        return PRECISIONS[self.precision]

    @property
    def use_tf32(self) -> bool:
        return self.device.type == "cuda" and (not self.deterministic if self.tf32 is None else bool(self.tf32))

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Autocast to ``bf16``/``fp16`` on this policy's device; a no-op context for fp32."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """A gradient scaler for fp16 training (bf16 and fp32 need none)."""
        return torch.amp.GradScaler(self.device.type) if self.precision == "fp16" else None

    def with_device(self, device: str | torch.device) -> "ExecutionPolicy":
        """The same policy on another device (e.g. ``cuda:LOCAL_RANK`` under torchrun)."""
        return replace(self, device=resolve_device(device))

    # -- applying it ----------------------------------------------------------------------------------------------------
    def activate(self) -> "ExecutionPolicy":
        """Set PyTorch's process-wide switches for this policy and make it the one :func:`current_policy` returns."""
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
            torch.backends.cuda.matmul.allow_tf32 = self.use_tf32
            torch.backends.cudnn.allow_tf32 = self.use_tf32
            torch.backends.cudnn.benchmark = not self.deterministic
            torch.backends.cudnn.deterministic = self.deterministic
        if self.deterministic:
            # cuBLAS reads this when its first handle is made; harmless when set already.
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
        elif torch.are_deterministic_algorithms_enabled():
            torch.use_deterministic_algorithms(False)
        _ACTIVE[:] = [self]
        return self

    def prepare(self, module: nn.Module, compile_methods: tuple[str, ...] = (), log: Callable[[str], None] | None = None
                ) -> nn.Module:
        """Move ``module`` to the device (weights stay fp32; autocast decides compute precision), tell the models
        that take a memory format which one to use, and compile ``compile_methods`` (e.g. ``("synthesis",)``) when
        the policy compiles. Returns ``module``."""
        module.to(self.device)
        for m in module.modules():
            if hasattr(type(m), "activation_memory_format"):
                m.activation_memory_format = self.memory_format  # type: ignore[assignment]
        if self.compile != "off":
            for name in compile_methods:
                setattr(module, name, self.compiled(getattr(module, name), f"{type(module).__name__}.{name}", log))
        return module

    def compiled(self, fn: Callable[..., Any], name: str = "model", log: Callable[[str], None] | None = None
                 ) -> Callable[..., Any]:
        """``fn`` compiled as this policy says (unchanged when ``compile="off"``), falling back to eager with the
        reason reported (see :func:`leangen.execution.compile.guarded_compile`)."""
        if self.compile == "off":
            return fn
        from leangen.execution.compile import guarded_compile

        return guarded_compile(fn, mode=self.compile, name=name, log=log)

    def record(self) -> dict[str, Any]:
        """What a benchmark or metric record states about the conditions it ran under."""
        return {"device": str(self.device), "device_name": device_name(self.device), "precision": self.precision,
                "tf32": self.use_tf32, "channels_last": self.channels_last, "deterministic": self.deterministic,
                "compile": self.compile, "na_backend": self.na_backend, "torch": torch.__version__,
                "cuda": torch.version.cuda if self.device.type == "cuda" else None}

    def describe(self) -> str:
        """One line for logs: ``cuda:0 (NVIDIA H200), bf16, TF32 on, compile off``."""
        parts = [f"{self.device} ({device_name(self.device)})", self.precision]
        if self.device.type == "cuda":
            parts.append(f"TF32 {'on' if self.use_tf32 else 'off'}")
        if self.deterministic:
            parts.append("deterministic")
        parts.append(f"compile {self.compile}")
        return ", ".join(parts)


def current_policy() -> ExecutionPolicy:
    """The policy the process activated last, or the CPU fp32 default when none was."""
    return _ACTIVE[0] if _ACTIVE else ExecutionPolicy()
