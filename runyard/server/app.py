"""The FastAPI application: routers, error mapping, request metrics, the lifetimes of the
sweeper and the notification deliverer."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runyard import enrolment, errors, jsonvalues
from runyard.artifacts import open_blob_store
from runyard.queue import Queue
from runyard.rules.engine import Engine
from runyard.server import (
    auth,
    query,
    routes_admin,
    routes_data,
    routes_notify,
    routes_preemption,
    routes_progress,
    routes_rules,
    routes_runs,
    routes_signin,
    routes_sync,
    routes_trainer,
    routes_workers,
    schemas,
    sse,
)
from runyard.server.deliverer import Deliverer
from runyard.server.eventhub import EventHub
from runyard.server.hotpath import HotPaths
from runyard.server.limits import BodyGuard, BodyLimits
from runyard.server.metrics_prom import ServerMetrics
from runyard.server.progress import estimate_eta
from runyard.server.settings import Settings
from runyard.server.state import ServerState
from runyard.server.sweeper import Sweeper
from runyard.server.ui import routes_api as ui_api
from runyard.server.ui import routes_ui
from runyard.store import Store, open_store

log = logging.getLogger(__name__)

API_VERSION = "1"


def error_body(kind: str, message: str, field: str | None = None,
               items: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The one error shape of the API (messages may quote what the caller sent: made
    printable, so an error about invalid text is not itself a 500)."""
    body = {"error": {"type": kind, "message": message, "field": field,
                      "errors": items if items is not None else
                      [{"field": field, "message": message}]}}
    out: dict[str, Any] = jsonvalues.safe_copy(body, float)
    return out


#: pydantic names the member of a union that failed; the client only needs the field.
_UNION_TAGS = frozenset({"float", "int", "str", "bool", "dict", "list", "none"})


def _field_of(loc: tuple[Any, ...]) -> str:
    parts = [p for p in loc if p not in ("body", "query", "path", "header")]
    parts = [p for p in parts if isinstance(p, int) or not (
        p in _UNION_TAGS or "[" in p or "(" in p)]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "body"


async def _runyard_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.RunyardError)
    return error_response(exc)


def error_response(exc: errors.RunyardError) -> JSONResponse:
    """The response for one of our errors: its status and the one error shape."""
    field = getattr(exc, "field", None)
    items = getattr(exc, "errors", None)
    headers = {"WWW-Authenticate": "Bearer"} if type(exc) is errors.AuthError else None
    if exc.http_status >= 500:
        log.error("%s: %s", type(exc).__name__, exc.message)
    return JSONResponse(error_body(type(exc).__name__, exc.message, field, items),
                        status_code=exc.http_status, headers=headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    items = []
    for e in exc.errors():
        field = _field_of(tuple(e.get("loc", ())))
        items.append({"field": field, "message": f"{field}: {e.get('msg')}"})
    first = items[0] if items else {"field": "body", "message": "invalid request"}
    return JSONResponse(error_body("ValidationError", first["message"], first["field"], items),
                        status_code=422)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    kind = {404: "NotFound", 405: "MethodNotAllowed", 401: "AuthError", 403: "Forbidden",
            413: "RequestTooLarge"}.get(
        exc.status_code, "HTTPError")
    return JSONResponse(error_body(kind, str(exc.detail)), status_code=exc.status_code,
                        headers=getattr(exc, "headers", None))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(error_body("ServerError", "internal server error"), status_code=500)


class RequestMetrics:
    """Counts and times requests by method, route template and status (pure ASGI: streams
    untouched)."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}
        started = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            labels = (scope["method"], getattr(route, "path", None) or "unmatched",
                      str(status["code"]))
            self.metrics.http_requests.labels(*labels).inc()
            # Until the answer is sent; an event stream counts its whole life.
            self.metrics.http_duration.labels(*labels).observe(time.perf_counter() - started)


def build_state(settings: Settings, store: Store | None = None
                ) -> tuple[ServerState, Path | None]:
    """Open the database (migrating it) unless ``store`` is given, and the blob store;
    create the first token.

    Returns the state and, on a first start without RUNYARD_ADMIN_TOKEN, the path of the
    file holding the new operator token.
    """
    if store is None:
        store = open_store(settings.database_url)
    blobs = open_blob_store(settings.artifacts_location)
    token_file = None if settings.no_auth else auth.bootstrap_admin(
        store, settings.data_dir, settings.admin_token)
    metrics = ServerMetrics(store, settings.stale_after_s)
    queue = Queue(store, stale_after_s=settings.stale_after_s)
    engine = Engine(store, queue, eta=lambda run: estimate_eta(store, run)).attach()
    queue.fleet.limits = enrolment.Limits(max_hosts_per_token=settings.max_hosts_per_token,
                                          max_workers=settings.max_workers)
    state = ServerState(
        settings=settings, store=store, queue=queue,
        blobs=blobs, auth=auth.TokenAuth(store, enabled=not settings.no_auth),
        metrics=metrics, events=EventHub(store, settings.sse_poll_s, metrics), rules=engine,
        deliverer=Deliverer(store, settings.notify_policy, public_url=settings.public_url))
    return state, token_file


def create_app(settings: Settings, state: ServerState | None = None, *,
               sweep: bool = True, deliver: bool = True) -> FastAPI:
    """The ASGI app. ``state`` defaults to :func:`build_state`; ``sweep`` runs the sweeper,
    ``deliver`` the notification deliverer."""
    if state is None:
        state, _ = build_state(settings)
    sweeper = Sweeper(state.queue, settings.sweep_interval_s,
                      forget_workers_after_s=settings.forget_workers_after_s, rules=state.rules)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if sweep:
            sweeper.start()
        if deliver:
            state.deliverer.start()
        try:
            yield
        finally:
            sweeper.stop()
            # In-flight deliveries finish and are recorded while the database is open.
            state.deliverer.stop()
            await state.events.stop()
            state.store.close()

    # No Swagger UI or ReDoc page: they load scripts from a CDN, outside the UI's
    # Content-Security-Policy. The schema is served at /openapi.json for any viewer.
    app = FastAPI(title="Runyard", version=API_VERSION, lifespan=lifespan,
                  description="Schedule, supervise and watch ML training runs.",
                  docs_url=None, redoc_url=None)
    app.state.runyard = state
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schemas.add_components(generate())
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_exception_handler(errors.RunyardError, _runyard_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
    # Every API route refuses the query parameters it does not declare; the UI's pages keep
    # theirs for the page's script.
    strict = [Depends(query.refuse_unknown)]
    api_modules = (routes_admin, routes_runs, routes_data, routes_rules, routes_sync,
                   routes_workers, routes_notify, sse, ui_api, routes_preemption,
                   routes_progress, routes_trainer, routes_signin)
    for module in api_modules:
        # Every error answer is the one shape of error_body, declared once for all routes.
        app.include_router(module.router, dependencies=strict, responses=schemas.ERRORS)
    app.include_router(routes_ui.router)

    @app.get("/metrics", include_in_schema=False, dependencies=strict)
    def prometheus() -> Response:
        return Response(state.metrics.exposition(),
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    # Inside RequestMetrics, so hot requests are counted like the rest.
    app.add_middleware(HotPaths, state=state, on_error=error_response)
    # Outside the routes and the hot path: no body is read before its caller is known.
    app.add_middleware(BodyGuard, tokens=state.auth, on_error=error_response,
                       limits=BodyLimits(),
                       routes=[route for module in (*api_modules, routes_ui)
                               for route in module.router.routes])
    app.add_middleware(RequestMetrics, metrics=state.metrics)
    return app
