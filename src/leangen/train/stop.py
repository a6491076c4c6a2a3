"""Ctrl-C and SIGTERM during training: a host-side flag the loop checks between steps (no device read)."""
from __future__ import annotations

import signal
import threading
from typing import Any, Callable


class StopFlag:
    """First SIGINT/SIGTERM: finish the current step, snapshot, exit. Second SIGINT: abort without a snapshot.

    A signal the process was started with ignored (``nohup``, a background job) stays ignored; the handlers in place
    before the run are restored after it.
    """

    def __init__(self, on_signal: Callable[[str], None]) -> None:
        self.requested = False
        self.aborted = False
        self._on_signal = on_signal
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "StopFlag":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    if signal.getsignal(sig) is signal.SIG_IGN:
                        continue
                    self._old[sig] = signal.signal(sig, self._handle)
                except (ValueError, OSError):  # pragma: no cover - embedded interpreters
                    pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            self.aborted = True
            raise KeyboardInterrupt
        self.requested = True
        self._on_signal(signal.Signals(signum).name)

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
