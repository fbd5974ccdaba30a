"""``GET /v1/events/stream``: server-sent events for live UIs.

Each stored event goes out as ``id: <global event id>``, ``event: <kind>`` (``status``,
``warning``, ``stalled``, ``checkpoint``...) and ``data: <event JSON>``; a reconnecting client
sends ``Last-Event-ID`` and misses nothing. Progress changes go out as ``event: progress``
without an id (they are a live view, not history). Comment lines keep proxies from closing
an idle stream. The events come from the database (so it works the same with several
replicas), read by the process's one :class:`~runyard.server.eventhub.EventHub`; a stream
that resumes behind it reads its own backlog from the database first. Streams are capped
per token and per server (429 past either, docs/security.md).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import anyio.to_thread
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from runyard import errors, models
from runyard.server import auth
from runyard.server.auth import Principal
from runyard.server.eventhub import (
    PAGE,
    EventHub,
    Subscriber,
    event_frame,
    frame,
    latest_event_id,
    progress_out,
)
from runyard.server.state import ServerState, get_state

router = APIRouter(tags=["events"])

#: Seconds an idle stream waits before looking whether its client is gone (its place is
#: given back then).
_CHECK_S = 1.0
_DROPPED = (b": dropped: this stream fell too far behind; reconnect with Last-Event-ID\n\n")


def _initial_progress(state: ServerState, run_id: str) -> list[bytes]:
    run = state.store.get_run(run_id)
    if run is None or run.get("progress_updated_at") is None:
        return []
    return [frame(progress_out(state.store, run), "progress")]


async def _stream(request: Request, state: ServerState, hub: EventHub, sub: Subscriber,
                  after_id: int) -> AsyncIterator[bytes]:
    beat_s = state.settings.sse_heartbeat_s
    run_id = sub.run_id
    yield b"retry: 2000\n: connected\n\n"
    try:
        # Far behind the shared feed: read pages of the backlog before joining it, so the
        # feed does not overflow this stream's queue meanwhile.
        while after_id < hub.position - PAGE:
            rows = await anyio.to_thread.run_sync(state.store.events_since, after_id, PAGE)
            if not rows:
                break
            for row in rows:
                after_id = int(row["id"])
                if run_id is None or row["run_id"] == run_id:
                    yield event_frame(row)
        joined = await hub.subscribe(sub)
        # The rest of the backlog, up to where the feed takes over.
        while after_id < joined:
            rows = await anyio.to_thread.run_sync(state.store.events_since, after_id, PAGE)
            rows = [r for r in rows if int(r["id"]) <= joined]
            if not rows:
                break
            for row in rows:
                after_id = int(row["id"])
                if run_id is None or row["run_id"] == run_id:
                    yield event_frame(row)
        if run_id is not None:
            for data in await anyio.to_thread.run_sync(_initial_progress, state, run_id):
                yield data
        last_beat = time.monotonic()
        while True:
            wait = max(0.0, min(_CHECK_S, beat_s - (time.monotonic() - last_beat)))
            try:
                event_id, data = await asyncio.wait_for(sub.queue.get(), timeout=wait)
            except TimeoutError:
                if await request.is_disconnected():
                    return
                if time.monotonic() - last_beat >= beat_s:
                    last_beat = time.monotonic()
                    yield b": keep-alive\n\n"
                continue
            if sub.dropped:
                yield _DROPPED
                return
            if event_id is not None:
                if event_id <= after_id:
                    continue
                after_id = event_id
            yield data
    finally:
        hub.unsubscribe(sub)


class _Stream(StreamingResponse):
    """Gives its stream's place back however the response ends (also when the client is
    gone before the first byte, when the body is never iterated)."""

    def __init__(self, body: AsyncIterator[bytes], hub: EventHub, token: str) -> None:
        super().__init__(body, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self._hub = hub
        self._token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._hub.release(self._token)


@router.get("/v1/events/stream", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}},
                       429: {"description": "too many open streams (per token or server)"}})
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
    hub = state.events
    hub.reserve(who.name)
    try:
        if start is None:
            start = await anyio.to_thread.run_sync(latest_event_id, state.store)
    except BaseException:
        hub.release(who.name)
        raise
    sub = Subscriber(token=who.name, run_id=run_id)
    return _Stream(_stream(request, state, hub, sub, start), hub, who.name)
