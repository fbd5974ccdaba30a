"""The real server app on uvicorn on 127.0.0.1, in a thread of the test's own process.

For tests that need a server on a socket (CLI commands, agents, the SDK and the browser talk
to it over real HTTP) but not a server process of its own: starting one costs about a tenth
of a ``runyard server`` process, whose interpreter and imports are most of its start. Tests of
the process itself (start-up, signals, restarts, kills, outages) use :class:`LiveServer`.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from runyard.cli.server import uvicorn_config
from runyard.server import Settings, build_state, create_app

from .app_server import LogBuffer
from .live_server import ADMIN_TOKEN, free_port
from .migrated import migrated_data_dir


class ThreadServer:
    """Starts and stops one server on a thread; the same ``url``, ``port``, ``admin_token``,
    ``data_dir``, ``client()``, ``headers()``, ``restart()`` and ``log()`` as
    :class:`LiveServer` (its log is the server's log records, not a file)."""

    def __init__(self, data_dir: Path, db_url: str | None = None, *,
                 stale_after_s: float = 120, **extra: Any) -> None:
        """``extra``: more :class:`Settings` fields (``runyard server``'s options)."""
        self.data_dir = data_dir
        self.db_url = db_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_token = ADMIN_TOKEN
        self.settings = Settings(data_dir=data_dir, host="127.0.0.1", port=self.port,
                                 db_url=db_url, stale_after_s=stale_after_s,
                                 admin_token=ADMIN_TOKEN, **extra)
        self._logs = LogBuffer()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 120.0) -> ThreadServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.db_url is None:
            migrated_data_dir(self.data_dir)
        state, _ = build_state(self.settings)
        config = uvicorn_config(create_app(self.settings, state), self.settings)
        logging.getLogger().addHandler(self._logs)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=f"server-{self.port}",
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                logging.getLogger().removeHandler(self._logs)
                raise RuntimeError(f"server thread ended before it served:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server did not start in {timeout} s:\n{self.log()}")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """Stops it as SIGTERM stops ``runyard server``: open event streams are closed after
        3 s, then the sweeper, the deliverer and the database."""
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError(f"server thread did not stop in {timeout} s:\n{self.log()}")
        self._server = self._thread = None
        logging.getLogger().removeHandler(self._logs)

    def restart(self) -> ThreadServer:
        self.stop()
        return self.start()

    def log(self) -> str:
        return self._logs.text()

    def client(self, headers: dict[str, str] | None = None, timeout: float = 30
               ) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.admin_token}"}
