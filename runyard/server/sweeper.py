"""The periodic stale-lease sweep, in a background thread of the server process."""

from __future__ import annotations

import logging
import threading

from runyard import errors
from runyard.queue import Queue

log = logging.getLogger(__name__)


class Sweeper:
    """Calls :meth:`Queue.sweep` every ``interval_s`` until :meth:`stop`.

    Several replicas may sweep the same database: the queue re-checks each lease under its
    row lock, so a double sweep ends an attempt once.
    """

    def __init__(self, queue: Queue, interval_s: float) -> None:
        self.queue = queue
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="runyard-sweeper", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                result = self.queue.sweep()
            except errors.RunyardError as exc:  # a database hiccup must not kill the thread
                log.warning("sweep failed: %s", exc)
                continue
            except Exception:  # pragma: no cover - logged, and the next tick tries again
                log.exception("sweep failed")
                continue
            if result.lost or result.stalled:
                log.info("sweep: lost %s, requeued %s, stalled %s",
                         result.lost, result.requeued, result.stalled)
