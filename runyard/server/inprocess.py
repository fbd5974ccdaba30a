"""The HTTP API answered inside this process, over a data directory's embedded store, read-only.

With no server running, ``runyard ls``, ``show``, ``logs``... still read the runs a notebook
recorded in embedded mode (docs/cli.md): a :class:`~runyard.client.Client` whose transport
hands each request to the server's own app instead of a socket, so the routes, filters and
serialisation are the server's, and every reading command works unchanged.

Nothing is written. SQLite opens the file read-only (it refuses any write itself), the
transport refuses every method but GET and HEAD, no token is created, and the app's lifespan
never runs, so neither the sweeper nor the notification deliverer starts. Its answers are
those of a server without authentication: whoever can read the data directory can read the
database file anyway.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from runyard import errors, local
from runyard.client import Client
from runyard.server.app import build_state, create_app
from runyard.server.settings import Settings
from runyard.store import open_store
from runyard.store.engine import sqlite_read_only_url
from runyard.store.sql import head_revision

#: The base URL the in-process client's requests carry (never resolved or connected to).
BASE_URL = "http://local-store"
#: The methods that only read.
READ_METHODS = frozenset({"GET", "HEAD"})


class AppTransport(httpx.BaseTransport):
    """Sends a synchronous client's requests to an ASGI app in this process, GET only.

    The app runs on an event loop of the transport's own, one request at a time; each
    answer is read whole, so an endless stream (server-sent events) is refused instead.
    """

    def __init__(self, app: Any, *, where: str, on_close: Callable[[], None]) -> None:
        self._asgi = httpx.ASGITransport(app=app)
        self._loop = asyncio.new_event_loop()
        self._lock = threading.Lock()
        self._where = where
        self._on_close = on_close

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method not in READ_METHODS:
            raise errors.Conflict(
                f"the local store at {self._where} is only read here; start `runyard up` "
                "(or give --server) to change runs")
        if "text/event-stream" in request.headers.get("accept", ""):
            raise errors.Conflict("live events need a running server")

        async def send() -> httpx.Response:
            answer = await self._asgi.handle_async_request(request)
            assert isinstance(answer.stream, httpx.AsyncByteStream)
            body = b"".join([chunk async for chunk in answer.stream])
            return httpx.Response(answer.status_code, headers=answer.headers,
                                  stream=httpx.ByteStream(body), extensions=answer.extensions)

        with self._lock:
            return self._loop.run_until_complete(send())

    def close(self) -> None:
        with self._lock:
            if not self._loop.is_closed():
                self._loop.close()
                self._on_close()


def open_reader(data_dir: Path) -> Client:
    """A client reading the embedded store of ``data_dir``; closing it closes the store.

    Raises :class:`errors.ConfigError` when there is no database there, or one whose schema
    is not the one this Runyard reads (it is never migrated from here).
    """
    path = local.embedded_db_path(data_dir)
    if not path.is_file():
        raise errors.ConfigError(f"no local store at {path}")
    store = open_store(sqlite_read_only_url(path), upgrade=False)
    try:
        found, wanted = store.current_revision(), head_revision()
        if found != wanted:
            raise errors.ConfigError(
                f"the local store at {path} has schema revision {found or 'none'} and this "
                f"Runyard reads {wanted}: `runyard db upgrade` brings an older one up to date")
        settings = Settings(data_dir=data_dir, no_auth=True)
        state, _ = build_state(settings, store)
        app = create_app(settings, state, sweep=False, deliver=False)
    except BaseException:
        store.close()
        raise
    return Client(BASE_URL, "", transport=AppTransport(app, where=str(path),
                                                        on_close=store.close))
