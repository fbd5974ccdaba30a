"""Send now, or keep on disk until the server answers again: the agent's and the SDK's outbox.

Training goes on while the server is away. What a lease holder (the agent forwarding an
attempt, the SDK's HTTP mode) could not send is appended to a :class:`Spool`, a JSON Lines
file with a byte-offset cursor, and replayed **in order** once the server answers again.
:class:`Outbox` is the one door every message goes through: while anything is spooled, new
messages queue behind it (never overtaking), and a failing server is retried after a delay
instead of on every call.

Nothing is lost: a message is on disk before :meth:`Outbox.post` returns unless the server
took it. Nothing is sent twice by the spool: the cursor moves past each entry the server
took, and the server's idempotent writes (metric points are upserts by attempt, tag and
step) absorb the one entry a crash between a send and its cursor write could repeat.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from runyard import errors

log = logging.getLogger(__name__)

#: ``send(entry)``: deliver one message; raises :class:`errors.TransportError` when the server
#: is away, :class:`errors.LeaseConflict` when the lease is gone.
Send = Callable[[dict[str, Any]], None]
#: ``encode(entry)``: one message as a JSON object on one line, without the newline.
Encode = Callable[[Mapping[str, Any]], bytes]


def encode_json(entry: Mapping[str, Any]) -> bytes:
    """The default :data:`Encode`: compact JSON (non-finite numbers spelled out already)."""
    return json.dumps(entry, separators=(",", ":"), allow_nan=False).encode()


class Spool:
    """An append-only JSON Lines file of messages and the offset of the first one not yet
    delivered, in ``directory`` (created on first use).

    Not thread-safe on its own: :class:`Outbox` serialises its use.
    """

    def __init__(self, directory: str | os.PathLike[str], *, entries_file: str = "spool.jsonl",
                 cursor_file: str = "spool.cursor", meta_file: str = "run.json") -> None:
        self.directory = Path(directory)
        self.path = self.directory / entries_file
        self.cursor_path = self.directory / cursor_file
        self.meta_path = self.directory / meta_file
        self.offset = self._load_cursor()
        try:
            self._size = self.path.stat().st_size
        except OSError:
            self._size = 0
        self.appended = 0
        self.replayed = 0

    def _load_cursor(self) -> int:
        try:
            return max(int(self.cursor_path.read_text("ascii").strip() or 0), 0)
        except (OSError, ValueError):
            return 0

    @property
    def pending(self) -> bool:
        """Whether some spooled message is not delivered yet."""
        return self._size > self.offset

    def append(self, line: bytes) -> None:
        """Add one message, already encoded as one line of JSON (written before returning)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "ab") as fh:
            fh.write(line + b"\n")
        self._size += len(line) + 1
        self.appended += 1

    def entries(self) -> Iterator[tuple[dict[str, Any], int]]:
        """``(entry, end_offset)`` for each undelivered message, oldest first; pass
        ``end_offset`` to :meth:`ack` once it is delivered.

        An unreadable line is skipped (one bad line must not block the rest); a last line
        cut short by a crash mid-append ends the iteration, as it can never be completed.
        """
        try:
            fh = open(self.path, "rb")  # closed below
        except OSError:
            return
        with fh:
            fh.seek(self.offset)
            offset = self.offset
            for raw in fh:
                if not raw.endswith(b"\n"):
                    return
                offset += len(raw)
                try:
                    entry = json.loads(raw)
                except ValueError:
                    entry = None
                if not isinstance(entry, dict):
                    log.warning("spool %s: skipping an unreadable entry", self.path)
                    self.ack(offset)
                    continue
                yield entry, offset

    def ack(self, end_offset: int) -> None:
        """Every message up to ``end_offset`` was delivered (the cursor is on disk after)."""
        self.offset = end_offset
        tmp = self.cursor_path.with_name(self.cursor_path.name + ".tmp")
        tmp.write_text(str(end_offset), "ascii")
        os.replace(tmp, self.cursor_path)

    def reset(self) -> None:
        """Everything was delivered: start the files afresh (the metadata stays)."""
        for path in (self.path, self.cursor_path):
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        self.offset = self._size = 0

    def remove(self) -> None:
        """Delete the spool's directory (the run ended and everything was delivered)."""
        shutil.rmtree(self.directory, ignore_errors=True)
        self.offset = self._size = 0

    def write_meta(self, meta: Mapping[str, Any]) -> None:
        """What a later replay needs besides the messages (server, run, lease)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.meta_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # a lease
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(dict(meta), fh)

    def read_meta(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.meta_path.read_text("utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None


class Delays(Protocol):
    """How long to wait before trying an absent server again."""

    def next_delay(self) -> float:
        """The wait before the next try; each call counts one more failure."""

    def reset(self) -> None:
        """The server answered: the next outage starts from the first delay."""


@dataclass
class FixedDelay:
    """The same wait after every failure."""

    seconds: float

    def next_delay(self) -> float:
        return self.seconds

    def reset(self) -> None:
        return None


def _log_down(outbox: Outbox, why: str) -> None:
    log.warning("server unreachable (%s); spooling to %s", why, outbox.spool.path)


def _log_up(outbox: Outbox, outage_s: float) -> None:
    log.warning("server reachable again after %.1f s; spool replayed (%d entries)",
                outage_s, outbox.spool.replayed)


class Outbox:
    """Sends through ``send``, spooling to disk whatever the server could not take.

    A send that raises :class:`errors.TransportError` is spooled (or, in a replay, stops
    it where it is: that entry is tried again next time). :class:`errors.LeaseConflict`
    propagates: the lease is gone and nothing more may be sent. Any other refusal (a 422
    for a malformed message) is logged and counts as delivered, so one bad message cannot
    block the spool for ever.

    ``on_down(outbox, why)`` is called when an outage starts, before the first message is
    spooled; ``on_up(outbox, outage_s)`` when the spool was replayed after one. Thread-safe:
    one lock keeps appends and replays in a single order (the callbacks run under it and
    may call :meth:`mark_down`).
    """

    def __init__(self, spool: Spool, send: Send, *, delays: Delays,
                 clock: Callable[[], float] = time.monotonic, encode: Encode = encode_json,
                 on_down: Callable[[Outbox, str], object] = _log_down,
                 on_up: Callable[[Outbox, float], object] = _log_up) -> None:
        self.spool = spool
        self._send = send
        self._delays = delays
        self._clock = clock
        self._encode = encode
        self._on_down = on_down
        self._on_up = on_up
        self._lock = threading.RLock()
        self.retry_at = 0.0
        #: When the current outage started (``clock`` time), None while the server answers.
        self.outage_started: float | None = None

    @property
    def backlog(self) -> bool:
        """Whether something is spooled and not yet delivered."""
        return self.spool.pending

    @property
    def down(self) -> bool:
        """Whether the last contact with the server failed and no replay succeeded since."""
        return self.outage_started is not None

    def post(self, entry: dict[str, Any]) -> bool:
        """Send one message, or spool it; True when it (and everything before it) was sent."""
        with self._lock:
            if self.spool.pending or self._clock() < self.retry_at:
                self._spool(entry)
                return self._flush_locked()
            try:
                self._deliver(entry)
            except errors.TransportError as exc:
                self._failed(exc.message)
                self._spool(entry)
                return False
            self._ok()
            return True

    def flush(self, *, force: bool = False) -> bool:
        """Replay the spool if its retry time has come (always, with ``force``); True when
        nothing is left. Once an outage's replay is through, ``on_up`` is told."""
        with self._lock:
            return self._flush_locked(force=force)

    def mark_down(self, why: str) -> None:
        """A call outside the outbox (a heartbeat) found the server away: queue behind."""
        with self._lock:
            self._failed(why)

    def _flush_locked(self, *, force: bool = False) -> bool:
        if not self.spool.pending and not self.down:
            return True
        if not force and self._clock() < self.retry_at:
            return False
        for entry, end in self.spool.entries():
            try:
                self._deliver(entry)
            except errors.TransportError as exc:
                self._failed(exc.message)
                return False
            self.spool.ack(end)
            self.spool.replayed += 1
        self.spool.reset()
        self._ok()
        return True

    def _deliver(self, entry: dict[str, Any]) -> None:
        try:
            self._send(entry)
        except (errors.TransportError, errors.LeaseConflict):
            raise
        except errors.RunyardError as exc:
            log.warning("the server refused a message, dropping it: %s", exc.message)

    def _spool(self, entry: dict[str, Any]) -> None:
        self.spool.append(self._encode(entry))

    def _failed(self, why: str) -> None:
        if self.outage_started is None:
            self.outage_started = self._clock()
            self._on_down(self, why)
        self.retry_at = self._clock() + self._delays.next_delay()

    def _ok(self) -> None:
        started, self.outage_started = self.outage_started, None
        self._delays.reset()
        self.retry_at = 0.0
        if started is not None:
            self._on_up(self, self._clock() - started)
