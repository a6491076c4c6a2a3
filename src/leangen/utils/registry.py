"""One registration mechanism for everything leangen looks up by name: model types, presets, training objectives,
tasks, checkpoint formats, metrics and runtimes.

A ``Registry`` is a ``dict`` (name -> entry) that

- registers by decorator or call: ``@MODELS.register("stylegan2")`` on a class, ``TASKS.register(cls)`` (the
  entry's own ``name`` attribute), or ``OBJECTIVES.register_lazy("gan", "leangen.train.gan:GANObjective")`` for an
  entry imported only when first looked up;
- discovers explicitly: the modules that register entries are named where the registry is made
  (``modules=...``, imported on first lookup) or a ``discover`` function says how to load them; nothing is found
  by scanning packages;
- refuses a name registered twice, and answers an unknown name with ``UnknownName`` (a ``KeyError`` and a
  ``ValueError``) whose one-line message lists close matches.
"""
from __future__ import annotations

import difflib
import importlib
from typing import Any, Callable, Iterable, Iterator, TypeVar, overload

T = TypeVar("T")


class UnknownName(KeyError, ValueError):
    """A name no registry entry has. A ``KeyError`` (a lookup) and a ``ValueError`` (what callers caught before)."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0]) if self.args else ""


class Registry(dict):
    """Entries by name, with explicit discovery and a helpful error for unknown names (see the module docstring).

    ``what`` names the entries in messages ("model type", "preset"); ``hint`` ends the unknown-name message when no
    name is close; ``replace=True`` lets a name be registered again (the newest wins).
    """

    def __init__(self, what: str, modules: Iterable[str] = (), discover: Callable[[], Any] | None = None,
                 hint: str = "", replace: bool = False) -> None:
        super().__init__()
        self.what, self.hint, self.replace = what, hint, replace
        self.modules = tuple(modules)
        self._discover = discover
        self._lazy: dict[str, str] = {}
        self._discovered = not self.modules and discover is None

    # -- registration ------------------------------------------------------------------------------------------
    @overload
    def register(self, name: str, entry: None = None) -> Callable[[T], T]: ...
    @overload
    def register(self, name: str, entry: T) -> T: ...
    @overload
    def register(self, name: T, entry: None = None) -> T: ...

    def register(self, name: Any, entry: Any = None) -> Any:
        """``register(name, entry)`` or ``@register(name)``; ``register(entry)`` uses ``entry.name``. Returns the
        entry (so it works as a class decorator). ``ValueError`` for a name registered twice with another entry."""
        if not isinstance(name, str):
            return self.register(str(name.name), name)
        if entry is None:
            return lambda obj: self.register(name, obj)
        have = dict.get(self, name)
        if (have is not None and have is not entry or name in self._lazy) and not self.replace:
            raise ValueError(f"{self.what} {name!r} registered twice")
        dict.__setitem__(self, name, entry)
        return entry

    def register_lazy(self, name: str, target: str) -> None:
        """Register ``"module:attribute"`` under ``name``, imported the first time ``name`` is looked up."""
        if dict.__contains__(self, name) or name in self._lazy:
            raise ValueError(f"{self.what} {name!r} registered twice")
        self._lazy[name] = target

    def discover(self) -> None:
        """Import the modules that register entries (once; explicit: the modules named at construction)."""
        if self._discovered:
            return
        self._discovered = True  # first: the modules imported below register into this registry
        for module in self.modules:
            importlib.import_module(module)
        if self._discover is not None:
            self._discover()

    # -- lookup --------------------------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Every registered name (after discovery), in registration order."""
        self.discover()
        return [*dict.keys(self), *(n for n in self._lazy if not dict.__contains__(self, n))]

    def unknown(self, name: object) -> UnknownName:
        """The error for ``name``: close matches, else every name (or the ``hint``)."""
        names = self.names()
        close = difflib.get_close_matches(str(name), names, n=5, cutoff=0.4)
        if close:
            tail = f"; did you mean {', '.join(close)}?"
        else:
            tail = f"; {self.hint}" if self.hint else f" (known: {', '.join(sorted(names))})"
        return UnknownName(f"unknown {self.what} {name!r}{tail}")

    def __missing__(self, name: str) -> Any:
        self.discover()
        if dict.__contains__(self, name):
            return dict.__getitem__(self, name)
        target = self._lazy.get(name)
        if target is None:
            raise self.unknown(name)
        module, attr = target.split(":")
        entry = getattr(importlib.import_module(module), attr)
        dict.__setitem__(self, name, entry)
        return entry

    def __contains__(self, name: object) -> bool:
        if dict.__contains__(self, name):
            return True
        self.discover()
        return dict.__contains__(self, name) or name in self._lazy

    def get(self, name: str, default: Any = None) -> Any:
        return self[name] if name in self else default

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def keys(self) -> list[str]:  # type: ignore[override]
        return self.names()

    def values(self) -> list[Any]:  # type: ignore[override]
        return [self[n] for n in self.names()]

    def items(self) -> list[tuple[str, Any]]:  # type: ignore[override]
        return [(n, self[n]) for n in self.names()]

    def __repr__(self) -> str:
        return f"Registry({self.what!r}: {', '.join(self.names())})"


__all__ = ["Registry", "UnknownName"]
