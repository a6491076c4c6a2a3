"""Atomic file writes: write to a temporary sibling, fsync, then ``os.replace``.

A crash or a full disk never leaves a half-written file under the final name, and a full disk surfaces as the
``OSError`` it is (``ENOSPC``), whatever serializer was writing.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any, BinaryIO, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _create_sibling(path)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def _create_sibling(path: Path) -> Path:
    """Create an empty, uniquely named temporary file next to ``path``.

    Not ``tempfile.mkstemp``: it creates files with mode 0600, which the final file would keep. ``os.open`` with
    0666 lets the process umask decide, as for any other file the program writes (0644 with umask 022).
    """
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return tmp
        except FileExistsError:  # pragma: no cover - a 32-bit random name collided
            continue


class _ErrorRecordingFile:
    """A binary file that remembers the ``OSError`` its ``write`` raised (serializers may wrap it in another type)."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self._f.write(data)
        except OSError as e:
            self.error = self.error or e
            raise

    def flush(self) -> None:
        self._f.flush()


@contextlib.contextmanager
def durable_writer(path: str | os.PathLike) -> Iterator[Any]:
    """Open ``path`` for binary writing; on success flush and fsync it.

    ``torch.save`` turns the ``OSError`` of a full disk into ``RuntimeError("... unexpected pos ...")``; when the
    file's own ``write`` failed, that original ``OSError`` (with its errno) is raised instead, so callers can tell a
    full disk from a bug.
    """
    with open(path, "wb") as raw:
        f = _ErrorRecordingFile(raw)
        try:
            yield f
            raw.flush()
            os.fsync(raw.fileno())
        except Exception as e:
            if f.error is not None and e is not f.error:
                raise f.error from e
            raise


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
