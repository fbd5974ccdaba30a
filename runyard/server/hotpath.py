"""The hottest endpoint served as plain ASGI, in front of FastAPI.

``POST /v1/runs/{id}/metrics`` carries every training loop's points, and a single writer (an
SDK flushing, an agent forwarding a stream) waits for each answer before its next batch.
Through FastAPI's router (which matches the path against every route in turn), its
dependency solver and its response serialisation, that wait is longer, by enough to lower
the points per second one client gets (``benchmarks/api_bench.py``, measured A/B) past what
this layer was allowed to cost. Here the request is authenticated, checked and answered
directly, with the functions the FastAPI route uses (:func:`runyard.server.auth.caller`,
:func:`runyard.server.query.check`, :func:`runyard.server.routes_data.ingest_metrics`), so
behaviour and errors are the same; that route stays for the OpenAPI schema.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from runyard import errors
from runyard.server import auth, query, routes_data
from runyard.server.bodies import parse_json
from runyard.server.state import ServerState

_METRICS = re.compile(r"/v1/runs/([^/]+)/metrics")


class HotPaths:
    """ASGI middleware answering ``POST /v1/runs/{id}/metrics``; everything else passes."""

    def __init__(self, app: ASGIApp, state: ServerState,
                 on_error: Callable[[errors.RunyardError], JSONResponse]) -> None:
        self.app = app
        self.state = state
        self.on_error = on_error
        # What RequestMetrics reads to label the request by its route template.
        self.route = next(r for r in routes_data.router.routes
                          if isinstance(r, APIRoute) and r.path == "/v1/runs/{run_id}/metrics"
                          and "POST" in (r.methods or ()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = None
        if scope["type"] == "http" and scope["method"] == "POST":
            match = _METRICS.fullmatch(scope["path"])
        if match is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route
        try:
            who = auth.demand(await auth.caller(self.state.auth, scope), auth.REPORT)
            if scope["query_string"]:
                query.check(self.route, (k for k, _ in parse_qsl(
                    scope["query_string"].decode("latin-1"), keep_blank_values=True)))
            body = await _body(receive)
            # Parsed in the worker thread too: a body may carry 100,000 points, and the
            # event loop serves every other request (live streams included) meanwhile.
            out = await run_in_threadpool(self._ingest, who, match.group(1), body)
            response = JSONResponse(out)
        except errors.RunyardError as exc:
            response = self.on_error(exc)
        except _Disconnected:
            return
        await response(scope, receive, send)


    def _ingest(self, who: auth.Principal, run_id: str, body: bytes) -> dict[str, Any]:
        return routes_data.ingest_metrics(self.state, who, run_id, parse_json(body))


class _Disconnected(Exception):
    """The client went away before its body arrived: nothing to answer."""


async def _body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message: Any = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
