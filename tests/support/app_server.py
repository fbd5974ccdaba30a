"""The real server app in the test's own process, on a real SQLite file (or the database
``db_url`` names), reached without a socket: for contract tests of the HTTP API.

Neither ``httpx.ASGITransport`` nor Starlette's ``TestClient`` hands back a response before the
app returns, so a request for the never-ending event stream would hang them; :class:`AppTransport`
returns at the response's start and ends the request (a client disconnect) when the response is
closed. The app runs on one event loop for its whole life (a blocking portal), with its lifespan
(the sweeper) as under uvicorn.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import anyio
import anyio.from_thread
import httpx

from runyard.server.app import create_app
from runyard.server.settings import Settings

from .live_server import ADMIN_TOKEN
from .migrated import migrated_data_dir

_END = object()


class _Body(httpx.SyncByteStream):
    """The response body as the app sends it; closing it disconnects the client."""

    def __init__(self, messages: queue.Queue[Any], disconnect: Any, done: Any,
                 portal: anyio.from_thread.BlockingPortal) -> None:
        self._messages = messages
        self._disconnect = disconnect
        self._done = done
        self._portal = portal
        self._ended = False

    def __iter__(self) -> Iterator[bytes]:
        while not self._ended:
            msg = self._messages.get()
            if msg is _END:
                self._ended = True
                break
            if msg["type"] == "http.response.body":
                if msg.get("body"):
                    yield bytes(msg["body"])
                if not msg.get("more_body", False):
                    self._ended = True

    def close(self) -> None:
        self._portal.call(self._disconnect.set)
        self._done.result(timeout=30)


class AppTransport(httpx.BaseTransport):
    """Sends each request to the ASGI app on the portal's event loop (thread-safe)."""

    def __init__(self, app: Any, portal: anyio.from_thread.BlockingPortal) -> None:
        self.app = app
        self.portal = portal

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        # A body the client sends in pieces (chunked) reaches the app in as many messages.
        pieces = [bytes(p) for p in request.stream] or [b""]  # type: ignore[union-attr]
        raw_path, _, _ = request.url.raw_path.partition(b"?")
        scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1", "method": request.method, "scheme": "http",
            "path": unquote(raw_path.decode("ascii")), "raw_path": raw_path,
            "query_string": request.url.query, "root_path": "",
            "headers": [(k.lower(), v) for k, v in request.headers.raw],
            "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
        }
        messages: queue.Queue[Any] = queue.Queue()
        disconnect = self.portal.call(anyio.Event)
        sent = {"pieces": 0}

        async def receive() -> dict[str, Any]:
            if sent["pieces"] < len(pieces):
                sent["pieces"] += 1
                return {"type": "http.request", "body": pieces[sent["pieces"] - 1],
                        "more_body": sent["pieces"] < len(pieces)}
            await disconnect.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            messages.put(message)

        async def run() -> None:
            try:
                await self.app(scope, receive, send)
            except Exception:
                # As under uvicorn: the error handlers have answered 500 already; log it only.
                logging.getLogger("runyard.tests").exception("app raised")
            finally:
                messages.put(_END)

        done = self.portal.start_task_soon(run)
        start = messages.get(timeout=120)
        if start is _END or start["type"] != "http.response.start":
            done.result(timeout=30)
            raise RuntimeError(f"the app sent no response start: {start!r}")
        return httpx.Response(start["status"], headers=start.get("headers", []),
                              stream=_Body(messages, disconnect, done, self.portal),
                              request=request)


class LogBuffer(logging.Handler):
    """The log records of an in-process server, kept for ``log()``."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self._lock_lines = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record)
        with self._lock_lines:
            self.lines.append(line)

    def text(self) -> str:
        with self._lock_lines:
            return "\n".join(self.lines)


class AppServer:
    """One in-process app; the same ``url``, ``admin_token``, ``headers()``, ``data_dir`` and
    ``log()`` as :class:`LiveServer`, and ``client()`` for an httpx client of it."""

    url = "http://testserver"

    def __init__(self, data_dir: Path, *, stale_after_s: float = 120,
                 max_upload_mb: float | None = None, no_auth: bool = False,
                 db_url: str | None = None, **extra: Any) -> None:
        """``db_url``: another database than the SQLite file under ``data_dir``; ``extra``:
        more :class:`Settings` fields."""
        self.data_dir = data_dir
        self.admin_token = ADMIN_TOKEN
        if max_upload_mb is not None:
            extra["max_upload_mb"] = max_upload_mb
        data_dir.mkdir(parents=True, exist_ok=True)
        if db_url is None:
            migrated_data_dir(data_dir)
        self.settings = Settings(data_dir=data_dir, admin_token=None if no_auth else ADMIN_TOKEN,
                                 stale_after_s=stale_after_s, no_auth=no_auth, db_url=db_url,
                                 **extra)
        self._logs = LogBuffer()
        self._stack: list[Any] = []
        self.transport: AppTransport | None = None

    def start(self) -> AppServer:
        root = logging.getLogger()
        root.addHandler(self._logs)
        self._stack.append(lambda: root.removeHandler(self._logs))
        runyard_log = logging.getLogger("runyard")
        level = runyard_log.level
        runyard_log.setLevel(logging.INFO)
        self._stack.append(lambda: runyard_log.setLevel(level))
        portal_cm = anyio.from_thread.start_blocking_portal()
        portal = portal_cm.__enter__()
        self._stack.append(lambda: portal_cm.__exit__(None, None, None))
        app = create_app(self.settings)
        life = portal.wrap_async_context_manager(app.router.lifespan_context(app))
        life.__enter__()
        self._stack.append(lambda: life.__exit__(None, None, None))
        self.transport = AppTransport(app, portal)
        return self

    def stop(self) -> None:
        while self._stack:
            self._stack.pop()()

    def client(self, headers: dict[str, str] | None = None, timeout: float = 30
               ) -> httpx.Client:
        assert self.transport is not None, "start() the server first"
        return httpx.Client(transport=self.transport, base_url=self.url, headers=headers,
                            timeout=timeout)

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.admin_token}"}

    def log(self) -> str:
        return self._logs.text()
