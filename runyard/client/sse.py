"""Server-sent events: a line parser, and a reconnecting reader that resumes by event id."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable, Iterator
from typing import Any

import httpx

from runyard import errors
from runyard.client import models
from runyard.client.http import Http

#: Seconds between reconnects unless the server sends ``retry:``.
RECONNECT_DELAY_S = 1.0
#: Consecutive failed connections before giving up.
MAX_FAILURES = 5


def parse_events(lines: Iterable[str]) -> Iterator[tuple[models.StreamEvent | None, int | None]]:
    """Parse SSE lines (WHATWG rules); yields ``(event, retry_ms)``, the event None for retry."""
    event_id: str | None = None
    kind = ""
    data: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                text = "\n".join(data)
                payload: Any = text
                with contextlib.suppress(ValueError):
                    payload = json.loads(text)
                yield models.StreamEvent(id=event_id, event=kind or "message", data=payload), None
            kind, data = "", []
            continue
        if line.startswith(":"):
            continue  # a comment: the server's keep-alive
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
        elif name == "event":
            kind = value
        elif name == "id" and "\x00" not in value:
            event_id = value
        elif name == "retry" and value.isdigit():
            yield None, int(value)


def stream(http: Http, path: str, *, last_event_id: str | None = None,
           params: dict[str, Any] | None = None, read_timeout: float = 60.0,
           reconnect: bool = True) -> Iterator[models.StreamEvent]:
    """Yield events for ever, reconnecting with ``Last-Event-ID`` after a drop."""
    delay = RECONNECT_DELAY_S
    failures = 0
    timeout = httpx.Timeout(read_timeout, connect=5.0)
    while True:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        try:
            with http.stream("GET", path, params=params, headers=headers,
                             timeout=timeout) as response:
                failures = 0
                for event, retry_ms in parse_events(response.iter_lines()):
                    if event is None:
                        delay = (retry_ms or 0) / 1000.0
                        continue
                    if event.id is not None:
                        last_event_id = event.id
                    yield event
        except errors.RunyardError as exc:
            # A 5xx or a dropped connection: retry; anything else (auth, 404) is final.
            if not (isinstance(exc, errors.TransportError)
                    or exc.details.get("http_status", 0) >= 500):
                raise
            failures += 1
            if not reconnect or failures >= MAX_FAILURES:
                raise
            if isinstance(exc.__cause__, httpx.ReadTimeout):
                failures -= 1  # a quiet stream is not a failure
        if not reconnect:
            return
        time.sleep(delay)
