"""SIGTERM handling for a run, kept in one small module.

The agent stops a run by creating the stop file, then SIGTERM, then SIGKILL after the grace
period. The handler here only sets a flag (``run.should_stop`` turns true) and chains to the
handler that was installed before it. When that previous handler was the default one (which
would have killed the process), a *second* SIGTERM raises :class:`SystemExit` in the main
thread, so a script that never checks ``should_stop`` still ends, recorded as ``stopped``.
A SIGTERM within :data:`REPEAT_WINDOW_S` of the first is the same stop arriving twice, not a
second one: a Slurm job's end signals every process of the job, and the supervisor in it
passes the stop on too, moments later; the trainer must still get to save its checkpoint.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

#: Exit status of a process ended by SIGTERM, as shells report it.
SIGTERM_EXIT_CODE = 128 + signal.SIGTERM
#: Seconds after the first SIGTERM in which another one is the same stop.
REPEAT_WINDOW_S = 1.0


class SigtermHandler:
    """Installed by :func:`install`; counts SIGTERMs and calls ``on_term`` for each."""

    def __init__(self, on_term: Callable[[], None], previous: Any) -> None:
        self.on_term = on_term
        self.previous = previous
        self.count = 0
        self.first_at: float | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        now = time.monotonic()
        if self.first_at is None:
            self.first_at = now
        self.on_term()
        if callable(self.previous):
            self.previous(signum, frame)
        elif self.previous == signal.SIG_DFL and now - self.first_at >= REPEAT_WINDOW_S:
            raise SystemExit(SIGTERM_EXIT_CODE)


def install(on_term: Callable[[], None]) -> Callable[[], None] | None:
    """Install the SIGTERM handler; returns the function that restores the previous one.

    Returns None (and installs nothing) off the main thread or where signals are not
    available, since :func:`signal.signal` only works on the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        previous = signal.getsignal(signal.SIGTERM)
        handler = SigtermHandler(on_term, previous)
        signal.signal(signal.SIGTERM, handler)
    except (ValueError, OSError, AttributeError):
        return None

    def restore() -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        try:
            # Only undo our own handler: someone may have installed theirs on top of it.
            if signal.getsignal(signal.SIGTERM) is handler:
                signal.signal(signal.SIGTERM, previous if previous is not None
                              else signal.SIG_DFL)
        except (ValueError, OSError):
            pass

    return restore
