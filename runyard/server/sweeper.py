"""The periodic stale-lease sweep, in a background thread of the server process."""

from __future__ import annotations

import logging
import threading

from runyard.queue import Queue

log = logging.getLogger(__name__)


class Sweeper:
    """Calls :meth:`Queue.sweep` every ``interval_s`` until :meth:`stop`.

    The server's own outage must cost no run (docs/lifecycle.md): the server was down until
    :meth:`start`, and a sweep that fails means the database is out of reach, so heartbeats
    are failing too. Either way every active lease gets a fresh grace before any lease is
    judged again (:meth:`Queue.note_outage`).

    Several replicas may sweep the same database: the queue re-checks each lease under its
    row lock, so a double sweep ends an attempt once.
    """

    def __init__(self, queue: Queue, interval_s: float) -> None:
        self.queue = queue
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Grant the grace and sweep once, here, before the server answers its first
        request; then go on in a thread."""
        self.queue.note_outage()
        self.tick()
        self._thread = threading.Thread(target=self._loop, name="runyard-sweeper", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def tick(self) -> None:
        """One round: the grace when one is due, then the sweep. Never raises."""
        try:
            moved = self.queue.grant_grace_if_due()
            if moved:
                log.info("%d active lease(s) given a fresh grace after the server's outage",
                         moved)
            result = self.queue.sweep()
        except Exception:  # a database hiccup must not kill the thread
            self.queue.note_outage()
            log.warning("sweep failed; active leases get a fresh grace once it succeeds",
                        exc_info=True)
            return
        if result.lost or result.stalled:
            log.info("sweep: lost %s, requeued %s, stalled %s",
                     result.lost, result.requeued, result.stalled)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.tick()
