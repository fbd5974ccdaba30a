"""One thread that makes an attempt's calls to the server, in the order they were given.

The attempt loop reads and parses the protocol files; the server stores what it is sent. Done
one after the other, each waits for the other: a training loop's backlog of metric lines took
the sum of both. :class:`Sender` lets the loop parse the next lines while the server stores
the last batch, with at most ``max_pending`` calls waiting (memory stays bounded, and a slow
server slows the reading down instead of piling batches up). The calls still reach the
:class:`~runyard.outbox.Outbox` one at a time, in order, so metrics still go before the
snapshot that mentions them and the spool's order is unchanged.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

#: Calls queued or running at most; more wait in :meth:`Sender.submit`.
MAX_PENDING = 3


class Sender:
    """Runs calls on one thread of its own, first in first out; a failure comes back to the
    caller at its next :meth:`submit` or :meth:`wait`."""

    def __init__(self, name: str, max_pending: int = MAX_PENDING) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._slots = threading.BoundedSemaphore(max_pending)
        self._pending: collections.deque[Future[None]] = collections.deque()

    def submit(self, fn: Callable[[], None]) -> None:
        """Queue ``fn`` behind every call before it; blocks while ``max_pending`` wait.

        Raises the exception of an earlier call that failed (each is raised once).
        """
        self._reap()
        self._slots.acquire()
        try:
            future = self._pool.submit(fn)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(self._release)
        self._pending.append(future)

    def wait(self) -> None:
        """Return once every call submitted so far has run; raises the first failure (the
        calls after it still run, and the next ``wait`` raises theirs)."""
        while self._pending:
            self._pending.popleft().result()

    def close(self) -> None:
        """Wait for the calls still queued, then stop the thread (failures are dropped)."""
        self._pool.shutdown(wait=True)
        self._pending.clear()

    def _reap(self) -> None:
        while self._pending and self._pending[0].done():
            self._pending.popleft().result()

    def _release(self, _future: Future[None]) -> None:
        self._slots.release()
