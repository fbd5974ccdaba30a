"""One database poller per server process, fanning events and progress out to every open
event stream (``GET /v1/events/stream``, :mod:`runyard.server.sse`).

Each stream polling the database itself made hundreds of idle browser tabs slow every other
request; with one poller the database work per poll interval is the same for one stream or
for the cap of :data:`~runyard.server.limits.SSE_STREAMS_TOTAL`. Each subscriber has a
bounded queue: one that cannot keep up is dropped (its stream ends with a comment saying so)
instead of growing the server's memory; its client reconnects with ``Last-Event-ID`` and
catches up from the database.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread

from runyard import errors, models
from runyard.server import serialize
from runyard.server.limits import SSE_STREAMS_PER_TOKEN, SSE_STREAMS_TOTAL
from runyard.server.metrics_prom import ServerMetrics
from runyard.server.progress import estimate_eta
from runyard.store.base import Row, RunFilter, Store

log = logging.getLogger(__name__)

#: Events read per query; a backlog is read in pages of this size.
PAGE = 500
#: Active runs whose progress each poll looks at.
PROGRESS_SCAN = 200
#: Frames a subscriber may have waiting before it is dropped.
QUEUE_MAX = 2000
_ACTIVE = tuple(s.value for s in models.ACTIVE)


def frame(data: Any, event: str, event_id: int | None = None) -> bytes:
    """One server-sent event."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def event_frame(row: Row) -> bytes:
    return frame(serialize.event_out(row), row["kind"], int(row["id"]))


def progress_out(store: Store, run: Row) -> dict[str, Any]:
    return {"run_id": run["id"], "status": run["status"], "attempt": run["attempt"],
            "progress": serialize.json_safe(run.get("progress")),
            "eta_seconds": estimate_eta(store, run),
            "stalled": bool(run.get("stalled")),
            "progress_updated_at": serialize.iso(run.get("progress_updated_at"))}


@dataclass(eq=False)
class Subscriber:
    """One open stream: what the poller has queued for it, as ``(event id or None, run id,
    frame)``; ``dropped`` once it fell :data:`QUEUE_MAX` frames behind."""

    token: str
    run_id: str | None
    queue: asyncio.Queue[tuple[int | None, bytes]] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_MAX))
    dropped: bool = False

    def offer(self, event_id: int | None, run_id: str, data: bytes) -> bool:
        """Queue one frame if it concerns this stream; False when the queue overflowed."""
        if self.run_id is not None and run_id != self.run_id:
            return True
        try:
            self.queue.put_nowait((event_id, data))
        except asyncio.QueueFull:
            self.dropped = True
            return False
        return True


class EventHub:
    """The shared poller: reads new events and active runs' progress once per
    ``poll_s`` while any stream is open, and hands each stream its frames."""

    def __init__(self, store: Store, poll_s: float, metrics: ServerMetrics) -> None:
        self.store = store
        self.poll_s = poll_s
        self.metrics = metrics
        #: The newest event id handed out (every stream has seen everything up to it).
        self.position = 0
        self._subscribers: set[Subscriber] = set()
        self._reserved: Counter[str] = Counter()
        self._seen: dict[str, Any] = {}
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self.metrics.sse_subscribers.set_function(lambda: sum(self._reserved.values()))

    # ------------------------------------------------------------------ places
    def reserve(self, token: str) -> None:
        """Take one of the stream places for ``token``; 429 past either cap."""
        if self._reserved[token] >= SSE_STREAMS_PER_TOKEN:
            raise errors.TooManyRequests(
                f"too many event streams: at most {SSE_STREAMS_PER_TOKEN} per token are open "
                "at once; close one (another browser tab?) and retry")
        if sum(self._reserved.values()) >= SSE_STREAMS_TOTAL:
            raise errors.TooManyRequests(
                f"too many event streams: the server-wide limit of {SSE_STREAMS_TOTAL} is "
                "reached; retry later")
        self._reserved[token] += 1

    def release(self, token: str) -> None:
        self._reserved[token] -= 1
        if self._reserved[token] <= 0:
            del self._reserved[token]

    # ------------------------------------------------------------------ subscribers
    async def subscribe(self, sub: Subscriber) -> int:
        """Join the feed; returns the position from which the poller hands ``sub`` events
        (what came before it, the stream reads from the database itself)."""
        self._bind()
        async with self._lock:
            if not self._subscribers:
                # Idle until now: start from the present instead of a stale position.
                self.position = await anyio.to_thread.run_sync(self._latest)
                self._seen = {}
                await anyio.to_thread.run_sync(self._progress_changes, [], True)
            self._subscribers.add(sub)
            position = self.position
        self._ensure_running()
        return position

    def _bind(self) -> None:
        """Belong to the running event loop (a test client may run each request in its own
        loop; a server has one)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            self._task = None
            self._wake = asyncio.Event()
            self._lock = asyncio.Lock()
            self._subscribers = set()

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except BaseException:
                pass
            self._task = None

    # ------------------------------------------------------------------ the poller
    async def _run(self) -> None:
        while True:
            if not self._subscribers:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                full = await self.poll_once()
            except Exception:  # a database hiccup must not end every stream
                log.exception("event stream poll failed")
                full = False
            if not full:
                await asyncio.sleep(self.poll_s)

    async def poll_once(self) -> bool:
        """One poll: new events and progress changes to every subscriber. True when a
        full page of events came (more may be waiting)."""
        async with self._lock:
            watched = {s.run_id for s in self._subscribers if s.run_id is not None}
            rows = await anyio.to_thread.run_sync(self.store.events_since, self.position, PAGE)
            progress = await anyio.to_thread.run_sync(self._progress_changes, sorted(watched),
                                                      False)
            self.metrics.sse_polls.inc()
            frames: list[tuple[int | None, str, bytes]] = [
                (int(r["id"]), str(r["run_id"]), event_frame(r)) for r in rows]
            frames += [(None, p["run_id"], frame(p, "progress")) for p in progress]
            if rows:
                self.position = int(rows[-1]["id"])
            for sub in list(self._subscribers):
                for event_id, run_id, data in frames:
                    if not sub.offer(event_id, run_id, data):
                        self._subscribers.discard(sub)
                        break
            return len(rows) >= PAGE

    def _latest(self) -> int:
        return latest_event_id(self.store)

    def _progress_changes(self, watched: list[str], prime: bool) -> list[dict[str, Any]]:
        """Runs whose ``progress_updated_at`` moved since the last poll (the active ones,
        and those a stream filters on); ``prime`` only remembers what they show now."""
        runs = self.store.list_runs(RunFilter(status=_ACTIVE), limit=PROGRESS_SCAN,
                                    sort="-updated_at")
        found = {r["id"] for r in runs}
        extra = [i for i in watched if i not in found]
        quiet: set[str] = set()
        if extra:
            more = self.store.list_runs(RunFilter(ids=tuple(extra)), limit=len(extra))
            # A run first watched now: its stream sent its progress when it opened.
            quiet = {r["id"] for r in more if r["id"] not in self._seen}
            runs += more
        out = []
        seen, self._seen = self._seen, {}
        for run in runs:
            stamp = run.get("progress_updated_at")
            if stamp is None:
                continue
            # Only the runs looked at now are remembered, so the map stays bounded.
            self._seen[run["id"]] = stamp
            if seen.get(run["id"]) != stamp and not prime and run["id"] not in quiet:
                out.append(progress_out(self.store, run))
        return out


def latest_event_id(store: Store) -> int:
    """The newest global event id (0 when there is none)."""
    fast = getattr(store, "latest_event_id", None)
    if callable(fast):
        return int(fast())
    last = 0
    while True:  # fallback: page through (only at connect, and ids are indexed)
        rows = store.events_since(last, 5000)
        if not rows:
            return last
        last = int(rows[-1]["id"])
