"""``GET /v1/events/stream``: server-sent events for live UIs.

Each stored event goes out as ``id: <global event id>``, ``event: <kind>`` (``status``,
``warning``, ``stalled``, ``checkpoint``...) and ``data: <event JSON>``; a reconnecting client
sends ``Last-Event-ID`` and misses nothing. Progress changes go out as ``event: progress``
without an id (they are a live view, not history). Comment lines keep proxies from closing
an idle stream. The stream polls the database, so it works the same with several replicas.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse

from runyard import errors, models
from runyard.server import auth, serialize
from runyard.server.auth import Principal
from runyard.server.progress import estimate_eta
from runyard.server.state import ServerState, get_state
from runyard.store.base import RunFilter, Store

router = APIRouter(tags=["events"])

#: Events read per poll; a client far behind catches up in pages of this size.
PAGE = 500
#: Runs whose progress each poll looks at.
PROGRESS_SCAN = 200
_ACTIVE = tuple(s.value for s in models.ACTIVE)


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


def _frame(data: Any, event: str, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class _ProgressWatch:
    """Remembers each run's ``progress_updated_at`` and reports those that moved."""

    def __init__(self, store: Store, run_id: str | None) -> None:
        self.store = store
        self.run_id = run_id
        self.seen: dict[str, float | None] = {}

    def prime(self) -> None:
        """Remember what the runs show now; with ``run_id`` its current progress is sent."""
        if not self.run_id:
            self.poll()

    def poll(self) -> list[dict[str, Any]]:
        if self.run_id:
            run = self.store.get_run(self.run_id)
            rows = [run] if run else []
        else:
            rows = self.store.list_runs(RunFilter(status=_ACTIVE), limit=PROGRESS_SCAN,
                                        sort="-updated_at")
        out = []
        for run in rows:
            stamp = run.get("progress_updated_at")
            if stamp is None or self.seen.get(run["id"]) == stamp:
                continue
            self.seen[run["id"]] = stamp
            out.append({"run_id": run["id"], "status": run["status"],
                        "attempt": run["attempt"],
                        "progress": serialize.json_safe(run.get("progress")),
                        "eta_seconds": estimate_eta(self.store, run),
                        "stalled": bool(run.get("stalled")),
                        "progress_updated_at": serialize.iso(stamp)})
        return out


async def _stream(request: Request, state: ServerState, after_id: int, run_id: str | None
                  ) -> AsyncIterator[bytes]:
    poll_s = state.settings.sse_poll_s
    beat_s = state.settings.sse_heartbeat_s
    watch = _ProgressWatch(state.store, run_id)
    await anyio.to_thread.run_sync(watch.prime)
    last_beat = time.monotonic()
    yield b"retry: 2000\n: connected\n\n"
    while True:
        if await request.is_disconnected():
            return
        rows = await anyio.to_thread.run_sync(state.store.events_since, after_id, PAGE)
        for row in rows:
            after_id = int(row["id"])
            if run_id and row["run_id"] != run_id:
                continue
            yield _frame(serialize.event_out(row), row["kind"], after_id)
        for prog in await anyio.to_thread.run_sync(watch.poll):
            yield _frame(prog, "progress")
        if time.monotonic() - last_beat >= beat_s:
            last_beat = time.monotonic()
            yield b": keep-alive\n\n"
        if len(rows) < PAGE:
            await asyncio.sleep(poll_s)


@router.get("/v1/events/stream", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def stream(request: Request, run_id: str | None = None,
                 after_id: int | None = Query(None, ge=0, le=models.INT64_MAX,
                                              description="resume after this event id"),
                 last_event_id: str | None = Header(None, alias="Last-Event-ID"),
                 who: Principal = Depends(auth.viewer),
                 state: ServerState = Depends(get_state)) -> StreamingResponse:
    """Live events of all runs (or of ``run_id``); resumes after ``Last-Event-ID``."""
    start: int | None = after_id
    if last_event_id:
        try:
            start = int(last_event_id)
            if not 0 <= start <= models.INT64_MAX:
                raise ValueError(start)
        except ValueError:
            raise errors.ValidationError("Last-Event-ID: expected an event id (integer)",
                                         field="Last-Event-ID") from None
    if start is None:
        start = await anyio.to_thread.run_sync(latest_event_id, state.store)
    return StreamingResponse(_stream(request, state, start, run_id),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
