"""Execution policy: the one owner of device, precision, TF32, memory format, determinism and compilation.

Layer: below ``ops`` and ``models`` (they may use the compile helpers), above ``utils``.
"""
from leangen.execution.compile import GuardedCompiled, compile_per_key, first_line, guarded_compile
from leangen.execution.device import DEVICE_CHOICES, device_name, resolve_device
from leangen.execution.policy import (COMPILE_MODES, PRECISIONS, CompileMode, ExecutionPolicy, Precision,
                                      current_policy)

__all__ = ["ExecutionPolicy", "current_policy", "resolve_device", "device_name", "guarded_compile",
           "GuardedCompiled", "compile_per_key", "first_line", "PRECISIONS", "COMPILE_MODES", "DEVICE_CHOICES",
           "Precision", "CompileMode"]
