"""Disk spool: what the agent could not send while the server was unreachable.

Training goes on when the server is down; the agent's progress, metrics and log calls that
fail are appended to ``spool.jsonl`` in the attempt's directory (one ``{"kind", "body"}``
object a line) and replayed **in order** once the server answers again. A byte-offset cursor
(``spool.cursor``) records how far the replay got, so nothing is sent twice by the spool,
and the server's idempotent metric and log writes absorb the one entry a crash between send
and cursor write could repeat.

:class:`Outbox` is the one door every such call goes through: while anything is spooled, new
messages queue behind it (never overtaking), and a failing server is retried with backoff
instead of on every probe tick.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from runyard import errors
from runyard.agent.api import Backoff

log = logging.getLogger(__name__)

SPOOL_FILE = "spool.jsonl"
CURSOR_FILE = "spool.cursor"

#: ``send(kind, body)``: deliver one message; raises TransportError when the server is away.
Sender = Callable[[str, Mapping[str, Any]], None]


class Spool:
    """An append-only JSON Lines file with a replay cursor."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.path = self.directory / SPOOL_FILE
        self.cursor_path = self.directory / CURSOR_FILE
        self.offset = self._load_cursor()
        self.appended = 0
        self.replayed = 0

    def _load_cursor(self) -> int:
        try:
            return max(int(self.cursor_path.read_text().strip() or 0), 0)
        except (OSError, ValueError):
            return 0

    def _save_cursor(self) -> None:
        tmp = self.cursor_path.with_name(self.cursor_path.name + ".tmp")
        tmp.write_text(str(self.offset))
        os.replace(tmp, self.cursor_path)

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    def pending(self) -> bool:
        """Whether something is spooled and not yet replayed."""
        return self.size() > self.offset

    def append(self, kind: str, body: Mapping[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"kind": kind, "body": body}, separators=(",", ":"),
                          allow_nan=False)
        with open(self.path, "a", encoding="utf-8", newline="\n") as fh:
            fh.write(line + "\n")
        self.appended += 1

    def replay(self, send: Sender) -> bool:
        """Send what is pending, in order; True when all of it went through.

        A transport error stops the replay where it is (the entry is retried next time).
        A 409 propagates: the lease is gone and nothing more may be sent. Any other refusal
        (a 422 for a malformed entry) is logged and skipped, so one bad entry cannot block
        the spool for ever.
        """
        if not self.pending():
            return True
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            for raw in fh:
                if not raw.endswith(b"\n"):
                    break  # a line cut short by a crash mid-append: never complete, stop
                try:
                    entry = json.loads(raw)
                    kind, body = str(entry["kind"]), entry["body"]
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning("spool %s: skipping an unreadable entry (%s)", self.path, exc)
                    self._advance(len(raw))
                    continue
                try:
                    send(kind, body)
                except errors.TransportError:
                    return False
                except errors.LeaseConflict:
                    raise
                except errors.RunyardError as exc:
                    log.warning("spool: the server refused a spooled %s call, dropping it: %s",
                                kind, exc.message)
                self._advance(len(raw))
                self.replayed += 1
        return not self.pending()

    def _advance(self, n: int) -> None:
        self.offset += n
        self._save_cursor()


class Outbox:
    """Sends through ``send``, spooling to disk whatever the server could not take.

    Thread-safe: one lock keeps appends and replays in a single order.
    """

    def __init__(self, spool: Spool, send: Sender, *, clock: Callable[[], float] = time.monotonic,
                 backoff: Backoff | None = None) -> None:
        self.spool = spool
        self._send = send
        self._clock = clock
        self._backoff = backoff or Backoff(base=0.2, cap=2.0, minimum=0.05)
        self._retry_at = 0.0
        self._lock = threading.Lock()
        self.outage_started: float | None = None

    @property
    def backlog(self) -> bool:
        return self.spool.pending()

    def post(self, kind: str, body: Mapping[str, Any]) -> bool:
        """Send one message, or spool it; True when it (and everything before it) was sent.

        Raises :class:`errors.LeaseConflict` when the server says the lease is gone.
        """
        with self._lock:
            if self.spool.pending() or self._clock() < self._retry_at:
                self.spool.append(kind, body)
                return self._flush_locked()
            try:
                self._send(kind, body)
            except errors.TransportError as exc:
                self._failed(exc)
                self.spool.append(kind, body)
                return False
            except errors.LeaseConflict:
                raise
            except errors.RunyardError as exc:
                log.warning("the server refused a %s call: %s", kind, exc.message)
            self._ok()
            return True

    def flush(self, *, force: bool = False) -> bool:
        """Replay the spool if its retry time has come (always, with ``force``)."""
        with self._lock:
            return self._flush_locked(force=force)

    def _flush_locked(self, *, force: bool = False) -> bool:
        if not self.spool.pending():
            return True
        if not force and self._clock() < self._retry_at:
            return False
        try:
            done = self.spool.replay(self._send)
        except errors.LeaseConflict:
            raise
        if done:
            self._ok()
        else:
            self._failed(None)
        return done

    def _failed(self, exc: errors.TransportError | None) -> None:
        if self.outage_started is None:
            self.outage_started = self._clock()
            log.warning("server unreachable (%s); spooling to %s",
                        exc.message if exc else "replay failed", self.spool.path)
        self._retry_at = self._clock() + self._backoff.next_delay()

    def _ok(self) -> None:
        if self.outage_started is not None:
            log.warning("server reachable again after %.1f s; spool replayed (%d entries)",
                        self._clock() - self.outage_started, self.spool.replayed)
        self.outage_started = None
        self._backoff.reset()
        self._retry_at = 0.0
