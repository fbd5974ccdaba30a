"""The periodic stale-lease sweep, and the forgetting of long-unseen workers, in a background
thread of the server process."""

from __future__ import annotations

import logging
import threading
import time

from runyard import defaults
from runyard.queue import Queue
from runyard.rules.engine import Engine

log = logging.getLogger(__name__)

#: Seconds between two rounds of forgetting long-unseen workers.
FORGET_EVERY_S = 60.0


class Sweeper:
    """Calls :meth:`Queue.sweep` every ``interval_s`` until :meth:`stop`.

    The server's own outage must cost no run (docs/lifecycle.md): the server was down until
    :meth:`start`, and a sweep that fails means the database is out of reach, so heartbeats
    are failing too. Either way every active lease gets a fresh grace before any lease is
    judged again (:meth:`Queue.note_outage`).

    Several replicas may sweep the same database: the queue re-checks each lease under its
    row lock, so a double sweep ends an attempt once.
    """

    def __init__(self, queue: Queue, interval_s: float, *,
                 forget_workers_after_s: float = defaults.FORGET_WORKERS_AFTER_S,
                 rules: Engine | None = None) -> None:
        self.queue = queue
        #: Evaluates stalled and runtime rules after each sweep (docs/rules.md).
        self.rules = rules
        self.interval_s = interval_s
        #: Workers unseen this long and holding no attempt are removed (0: never): a lab's
        #: machines come and go, and a gone one would stay listed as offline forever.
        self.forget_workers_after_s = forget_workers_after_s
        self._forgot_at: float | None = None
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
        if self.rules is not None:
            try:
                self.rules.sweep()
            except Exception:  # a database hiccup must not kill the thread
                log.warning("evaluating stalled and runtime rules failed", exc_info=True)
        if self.forget_workers_after_s > 0:
            self._forget_workers()

    def _forget_workers(self) -> None:
        """At most once a minute: it takes SQLite's write lock, and a week needs no finer
        reckoning."""
        queue = self.queue
        now = time.monotonic()
        if self._forgot_at is not None and now - self._forgot_at < FORGET_EVERY_S:
            return
        self._forgot_at = now
        try:
            gone = queue.fleet.forget(
                seen_before=queue.clock() - self.forget_workers_after_s)
        except Exception:  # a database hiccup must not kill the thread
            log.warning("forgetting long-unseen workers failed", exc_info=True)
            return
        if gone:
            log.info("forgot workers unseen for %gs: %s", self.forget_workers_after_s, gone)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.tick()
