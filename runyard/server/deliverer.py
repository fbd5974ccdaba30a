"""The notification deliverer: a background thread of the server that sends what the outbox
holds (docs/notifications.md).

Deliveries happen here and only here, off every request's path, at most
``policy.concurrency`` at a time, each bounded by ``policy.timeout_s``: a slow or dead
receiver costs a delivery slot, never ingest or the API. A failed attempt is tried again
after an exponential, jittered delay, up to ``policy.max_attempts``; the row then fails with
the last error. Several server processes may deliver from one PostgreSQL database: a row is
claimed by one of them at a time (:meth:`runyard.store.base.Store.claim_notifications`).

Each attempt's result is recorded only after the receiver answered; a process killed in
between leaves its claimed rows due again once the claim lapses, so a receiver may see an
attempt twice (``X-Runyard-Delivery`` lets it drop the repeat) but never loses one.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from runyard.notifications import deliveries, messages
from runyard.notifications.deliveries import Policy
from runyard.notifications.sender import Sender
from runyard.store.base import Row, Store, Transaction
from runyard.store.notifications import DELIVERED, FAILED

log = logging.getLogger(__name__)

#: Seconds a claim outlives the attempt's own bound, for the database writes around it.
CLAIM_MARGIN_S = 30.0
#: Shortest pause between two looks at the outbox (rows due now but held by another
#: replica's claim must not make this thread spin).
MIN_WAIT_S = 0.02


class Deliverer:
    """Sends due deliveries from ``store`` until :meth:`stop`.

    ``public_url`` is where the web UI is reached (the run page links in messages).
    """

    def __init__(self, store: Store, policy: Policy | None = None, *,
                 public_url: str | None = None, sender: Sender | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.policy = policy or Policy()
        self.public_url = public_url
        self.clock = clock
        self._sender = sender or Sender(self.policy.timeout_s,
                                        concurrency=self.policy.concurrency)
        self._pool = ThreadPoolExecutor(max_workers=self.policy.concurrency,
                                        thread_name_prefix="runyard-notify")
        self._lock = threading.Lock()
        self._in_flight = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ the door in
    def enqueue(self, *, channel: str, run_id: str | None, kind: str,
                payload: Mapping[str, Any] | None, at: float | None = None,
                tx: Transaction | None = None) -> int:
        """:func:`runyard.notifications.deliveries.enqueue` into this server's store (or the
        open ``tx``), then a nudge so the delivery goes out now rather than at the next poll.
        Returns the delivery's id."""
        delivery = deliveries.enqueue(tx if tx is not None else self.store, channel=channel,
                                      run_id=run_id, kind=kind, payload=payload, at=at)
        self.wake()
        return delivery

    def wake(self) -> None:
        """Look at the outbox now (after something was enqueued)."""
        self._wake.set()

    # ------------------------------------------------------------------ lifetime
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="runyard-deliverer",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Take no more deliveries; let those in flight finish and be recorded (each is
        bounded by the policy's timeout)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout if timeout is not None else self.policy.timeout_s + 10)
        self._pool.shutdown(wait=True)
        self._sender.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            wait = self.policy.poll_s
            try:
                # A read first: the claim is a write transaction, and an idle server should
                # not take the database's write lock every poll for nothing.
                due = self.store.next_notification_due()
                if due is not None and due <= self.clock():
                    self.tick()
                    due = self.store.next_notification_due()
                if due is not None:
                    wait = min(wait, max(due - self.clock(), MIN_WAIT_S))
            except Exception:  # a database hiccup must not kill the thread
                log.warning("the notification outbox could not be read", exc_info=True)
            with self._lock:
                full = self._in_flight >= self.policy.concurrency
            # With every slot busy a finishing delivery wakes us; else a due row or the poll.
            self._wake.wait(self.policy.poll_s if full else wait)

    def tick(self) -> int:
        """Claim as many due deliveries as there are free slots and start them; returns
        how many were started."""
        with self._lock:
            free = self.policy.concurrency - self._in_flight
        if free <= 0 or self._stop.is_set():
            return 0
        now = self.clock()
        claim = secrets.token_hex(8)
        rows = self.store.claim_notifications(
            now, free, now + self.policy.timeout_s + CLAIM_MARGIN_S, claim)
        for row in rows:
            with self._lock:
                self._in_flight += 1
            self._pool.submit(self._run, row, claim)
        return len(rows)

    # ------------------------------------------------------------------ one attempt
    def _run(self, row: Row, claim: str) -> None:
        try:
            self.attempt(row, claim)
        except Exception:  # recorded nowhere: the claim lapses and the row is tried again
            log.warning("delivery %s: the attempt's outcome could not be recorded",
                        row.get("id"), exc_info=True)
        finally:
            with self._lock:
                self._in_flight -= 1
            self._wake.set()

    def attempt(self, row: Row, claim: str) -> str | None:
        """Make one attempt at a claimed delivery and record it; returns the error, if any."""
        channel = self.store.get_channel(row["channel"])
        if channel is None:
            gone = f"channel {row['channel']!r} was deleted"
            self._finish(row, claim, gone, final=True)
            return gone
        doc = messages.document(row, channel["name"], self.public_url)
        if channel["kind"] == "slack":
            body, headers = messages.slack_request(doc)
        else:
            body, headers = messages.webhook_request(doc, channel.get("secret"),
                                                     now=self.clock())
        error = self._sender.post(str(channel["url"]), body, headers)
        if error is not None:
            log.info("delivery %s to channel %s, attempt %s: %s", row["id"], channel["name"],
                     row["attempts"], error)
        self._finish(row, claim, error, final=False)
        return error

    def _finish(self, row: Row, claim: str, error: str | None, *, final: bool) -> None:
        now = self.clock()
        values: dict[str, Any] = {"updated_at": now}
        if error is None:
            values.update(status=DELIVERED, delivered_at=now, next_attempt_at=None)
        elif final or self.policy.gives_up(int(row["attempts"])):
            values.update(status=FAILED, last_error=error, next_attempt_at=None)
        else:
            values.update(last_error=error,
                          next_attempt_at=now + self.policy.retry_delay(int(row["attempts"])))
        if not self.store.finish_notification(int(row["id"]), claim, values):
            log.warning("delivery %s: its claim lapsed before the outcome was recorded",
                        row["id"])
