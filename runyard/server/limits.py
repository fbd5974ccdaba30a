"""Request body limits, and authentication before any byte of a body is read; the caps on
concurrent event streams and log chunks live here too (the HTTP server's connection limit
is an option of ``runyard server``, its default in :mod:`runyard.defaults`).

A server that a whole lab shares must not let an anonymous caller make it read, buffer or
parse a large body: the caller is authenticated from its ``Authorization`` header first, a
declared ``Content-Length`` over the endpoint's limit is refused at once, and a chunked body
is counted as it streams in and cut off at the limit. The limits, by kind of endpoint, are
all here and documented in docs/security.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runyard import errors
from runyard.server import auth

MIB = 1024 * 1024

#: Largest ``data`` of one log chunk, in characters (the agent sends at most 256 KiB).
LOG_CHUNK_MAX = 1 * MIB
#: Concurrent ``GET /v1/events/stream`` connections one token may hold (browser tabs).
SSE_STREAMS_PER_TOKEN = 20
#: Concurrent event streams the whole server process holds.
SSE_STREAMS_TOTAL = 200

#: Methods whose requests carry a body; only those are guarded.
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class BodyLimits:
    """The largest body, in bytes, each kind of endpoint accepts."""

    #: Runs, tokens, claims, heartbeats, progress snapshots, stop/restart and the like.
    control: int = 1 * MIB
    #: ``POST /v1/runs/{id}/metrics`` and the import of a run's metrics.
    metrics: int = 64 * MIB
    #: ``POST /v1/attempts/{id}/logs``.
    logs: int = 16 * MIB
    #: ``POST /v1/manifest/validate`` and ``/reload``.
    manifest: int = 4 * MIB
    #: ``POST /v1/runs/import`` (an ended run with its attempts and events).
    imports: int = 64 * MIB
    #: ``POST /v1/attempts/{id}/trainer-status``: a Kubeflow trainer status (at most 256
    #: metrics), which the training process itself sends.
    trainer_status: int = 256 * 1024
    #: ``POST /v1/signin``: a sign-in link's code, which anyone may send.
    signin: int = 4 * 1024

    def for_request(self, method: str, path: str) -> int | None:
        """The limit that applies to one request; None for artifact and checkpoint uploads
        (``PUT .../artifacts/...``), which the upload route holds to ``--max-upload-mb`` as
        it streams them to the blob store."""
        if method == "PUT" and _UPLOAD.fullmatch(path):
            return None
        if path in PUBLIC_BODY_PATHS:
            return self.signin
        if _METRICS.fullmatch(path):
            return self.metrics
        if _LOGS.fullmatch(path):
            return self.logs
        if _TRAINER_STATUS.fullmatch(path):
            return self.trainer_status
        if path.startswith("/v1/manifest/"):
            return self.manifest
        if path == "/v1/runs/import":
            return self.imports
        return self.control


#: Requests with a body that need no token: their body is the credential (a sign-in link's
#: code, docs/security.md). They are held to a small limit instead.
PUBLIC_BODY_PATHS = frozenset({"/v1/signin"})

_UPLOAD = re.compile(r"/v1/runs/[^/]+/(import/)?artifacts/.+")
_METRICS = re.compile(r"/v1/runs/[^/]+/(import/)?metrics")
_LOGS = re.compile(r"/v1/attempts/[^/]+/logs")
_TRAINER_STATUS = re.compile(r"/v1/attempts/[^/]+/trainer-status")


class _BodyTooLarge(HTTPException):
    """Raised inside the app's ``receive`` once a streamed body passes its limit. An
    ``HTTPException``, because FastAPI turns any other error met while reading a body into
    a 400, and the app's handler answers this one with its 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"body: more than this endpoint's limit of {limit} bytes")


class BodyGuard:
    """ASGI middleware: authenticates ``/v1/`` requests that carry a body before the app
    reads it, and holds every body to its limit. The principal it finds is left in the
    request's state, where :func:`runyard.server.auth.principal` takes it."""

    def __init__(self, app: ASGIApp, tokens: auth.TokenAuth, limits: BodyLimits,
                 on_error: Callable[[errors.RunyardError], JSONResponse],
                 routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.tokens = tokens
        self.limits = limits
        self.on_error = on_error
        self.routes = routes

    async def _refuse(self, exc: errors.RunyardError, scope: Scope, receive: Receive,
                      send: Send) -> None:
        # The request never reaches the router: name its route here, so the request
        # metrics count a refusal under the route's template like any other answer.
        for route in self.routes:
            if route.matches(scope)[0] is Match.FULL:
                scope["route"] = route
                break
        await self.on_error(exc)(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] not in BODY_METHODS
                or not scope["path"].startswith("/v1/")):
            await self.app(scope, receive, send)
            return
        limit = self.limits.for_request(scope["method"], scope["path"])
        try:
            who = None if scope["path"] in PUBLIC_BODY_PATHS and scope["method"] == "POST" \
                else await auth.authenticate(self.tokens, _header(scope, b"authorization"))
            declared = _header(scope, b"content-length")
            if limit is not None and declared is not None and (
                    not declared.isdigit() or int(declared) > limit):
                raise errors.RequestTooLarge(
                    f"body: {declared} bytes exceeds this endpoint's limit of {limit} bytes")
        except errors.RunyardError as exc:
            await self._refuse(exc, scope, receive, send)
            return
        if who is not None:
            scope.setdefault("state", {})[auth.STATE_KEY] = who
        if limit is None:
            await self.app(scope, receive, send)
            return
        started = False
        seen = 0

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _BodyTooLarge(limit)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except _BodyTooLarge as exc:
            if started:
                raise
            await self._refuse(errors.RequestTooLarge(str(exc.detail)), scope, receive, send)


def _header(scope: Scope, name: bytes) -> str | None:
    headers: Any = scope["headers"]
    for key, value in headers:
        if key == name:
            return str(value.decode("latin-1"))
    return None
