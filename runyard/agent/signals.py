"""SIGTERM and SIGINT as flags: the first asks for a graceful stop, the second forces it.

The agent drains on the first signal (stops claiming, gives running attempts their grace
period) and kills its children on the second (rq's ``request_stop`` then
``request_force_stop``).

The handlers only flip booleans. They deliberately do not call ``threading.Event.set``:
a Python signal handler runs on the main thread between two bytecodes, and if that thread
was itself inside the same Event's internal (non-reentrant) lock, ``set`` would deadlock.
:meth:`StopFlag.wait` therefore polls, in steps of :data:`WAIT_STEP_S`.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from types import FrameType

log = logging.getLogger(__name__)

#: Polling step of :meth:`StopFlag.wait`: the worst delay between a signal and its waiter.
WAIT_STEP_S = 0.05

DEFAULT_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)


class StopFlag:
    """A one-way flag with an Event-like API, safe to set from a signal handler."""

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True  # a plain store: no lock, so safe inside a handler

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until set or ``timeout`` seconds pass; return whether it is set."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._set:
            remaining = WAIT_STEP_S if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                break
            time.sleep(min(WAIT_STEP_S, remaining))
        return self._set

    def __bool__(self) -> bool:
        return self._set


class StopSignals:
    """What :func:`on_stop` yields: ``graceful`` after one signal, ``force`` after two."""

    def __init__(self) -> None:
        self.graceful = StopFlag()
        self.force = StopFlag()
        self.count = 0
        self.last_signal: int | None = None
        #: When the first signal came (monotonic).
        self.first_at: float | None = None
        #: False when the handlers could not be installed (not the main thread).
        self.installed = False

    def handle(self, signum: int, frame: FrameType | None = None) -> None:
        """The signal handler: count, remember, set a flag. Nothing else."""
        self.count += 1
        self.last_signal = signum
        if self.count == 1:
            self.first_at = time.monotonic()
            self.graceful.set()
        else:
            self.graceful.set()
            self.force.set()


@contextlib.contextmanager
def on_stop(signals: Sequence[int] = DEFAULT_SIGNALS,
            state: StopSignals | None = None) -> Iterator[StopSignals]:
    """Install the stop handlers for the duration of the block, then restore the old ones.
    ``state``: the flags to set (new ones unless given).

    Off the main thread (where Python forbids ``signal.signal``) it installs nothing and
    yields flags that only change when set by hand.
    """
    state = state if state is not None else StopSignals()
    if threading.current_thread() is not threading.main_thread():
        log.debug("not on the main thread: stop signals are not handled here")
        yield state
        return
    previous: dict[int, signal._HANDLER] = {}
    try:
        for signum in signals:
            previous[signum] = signal.signal(signum, state.handle)
        state.installed = True
        yield state
    finally:
        for signum, handler in previous.items():
            # None means a handler set outside Python; the default is the closest we can do.
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
