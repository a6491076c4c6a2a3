"""One guarded wrapper around ``torch.compile``: compile when asked, fall back to eager when compilation fails, and
say so (never silently).

:func:`guarded_compile` serves models (``--compile compile|cudagraphs`` on the verbs) and the profiler;
:func:`compile_per_key` serves ops such as flex attention that must be compiled once per input shape: each key gets
its own copy of the function's code object, so dynamo's per-code recompile limit (8 by default) is never shared by
the many shapes of one model (StyleNAT-256 has 11) and never pushes a kernel back to eager execution.
"""
from __future__ import annotations

import types
import warnings
from typing import Any, Callable, Hashable

import torch

#: ``--compile`` mode -> ``torch.compile`` keyword arguments.
_COMPILE_KWARGS: dict[str, dict[str, Any]] = {"compile": {}, "cudagraphs": {"mode": "reduce-overhead"}}


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (compiler errors run to pages), and of its root cause when it wraps
    one (``BackendCompilerFailed`` says only which backend raised)."""
    def line(x: BaseException) -> str:
        text = str(x).strip()
        return f"{type(x).__name__}: {text.splitlines()[0]}" if text else type(x).__name__

    root = e
    for _ in range(10):
        inner = getattr(root, "inner_exception", None) or root.__cause__
        if inner is None:
            break
        root = inner
    return line(e) if root is e else f"{line(e)} {line(root)}"


class GuardedCompiled:
    """``fn`` compiled lazily; if compiling or the first compiled call raises, every later call runs ``fn`` eagerly.

    ``status`` is ``"pending"`` before the first call, then ``"compiled"`` or ``"eager: <reason>"``. The fallback is
    reported once through ``log`` (default: a ``RuntimeWarning``).
    """

    def __init__(self, fn: Callable[..., Any], mode: str = "compile", name: str = "model",
                 log: Callable[[str], None] | None = None, **compile_kwargs: Any) -> None:
        if mode not in _COMPILE_KWARGS:
            raise ValueError(f"unknown compile mode {mode!r}; expected one of {', '.join(_COMPILE_KWARGS)}")
        self.fn, self.mode, self.name = fn, mode, name
        self._log = log
        self.status = "pending"
        self._compiled: Callable[..., Any] | None = None
        try:
            self._compiled = torch.compile(fn, **{**_COMPILE_KWARGS[mode], **compile_kwargs})
        except Exception as e:  # e.g. a torch without a working compiler stack
            self._fall_back(e)

    def _fall_back(self, e: BaseException) -> None:
        self._compiled = None
        self.status = f"eager: {first_line(e)}"
        message = f"torch.compile of {self.name} failed, running eagerly instead ({first_line(e)})"
        if self._log is not None:
            self._log(message)
        else:
            warnings.warn(message, RuntimeWarning, stacklevel=3)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._compiled is None:
            return self.fn(*args, **kwargs)
        try:
            out = self._compiled(*args, **kwargs)
        except Exception as e:  # inductor raises many types (BackendCompilerFailed, InductorError, CalledProcessError)
            if self.status == "compiled":
                raise  # it compiled and ran before: this is a real error of the computation, not of compiling
            self._fall_back(e)
            return self.fn(*args, **kwargs)
        self.status = "compiled"
        return out


def guarded_compile(fn: Callable[..., Any], mode: str = "compile", name: str = "model",
                    log: Callable[[str], None] | None = None, **compile_kwargs: Any) -> GuardedCompiled:
    """``fn`` (a module or function) compiled under ``mode`` (``compile`` or ``cudagraphs``) with an eager fallback;
    see :class:`GuardedCompiled`."""
    return GuardedCompiled(fn, mode, name, log, **compile_kwargs)


def fresh_function(fn: types.FunctionType, tag: str) -> types.FunctionType:
    """A copy of ``fn`` with its own code object (so its own dynamo cache and recompile budget)."""
    code = fn.__code__.replace(co_name=f"{fn.__code__.co_name}_{tag}")
    copy = types.FunctionType(code, fn.__globals__, code.co_name, fn.__defaults__, fn.__closure__)
    copy.__kwdefaults__ = fn.__kwdefaults__
    return copy


class CompilePerKey:
    """``torch.compile(copy_of(fn), dynamic=False, fullgraph=True)`` made once per key (e.g. an input shape).

    ``fullgraph=True``: a graph break raises instead of silently running part of the op eagerly; with one code object
    per key a key never recompiles for another key's shapes.
    """

    def __init__(self, fn: types.FunctionType, **compile_kwargs: Any) -> None:
        self.fn = fn
        self.kwargs = {"dynamic": False, "fullgraph": True, **compile_kwargs}
        self._by_key: dict[Hashable, Callable[..., Any]] = {}

    def get(self, key: Hashable) -> Callable[..., Any]:
        """The compiled function for ``key`` (compiled on its first call)."""
        fn = self._by_key.get(key)
        if fn is None:
            fn = torch.compile(fresh_function(self.fn, str(len(self._by_key))), **self.kwargs)
            self._by_key[key] = fn
        return fn

    def __len__(self) -> int:
        return len(self._by_key)


def compile_per_key(fn: types.FunctionType, **compile_kwargs: Any) -> CompilePerKey:
    """See :class:`CompilePerKey`."""
    return CompilePerKey(fn, **compile_kwargs)
