"""End-to-end fixtures: real ``runyard server`` processes on 127.0.0.1 and a headless browser.

Leases last 120 s unless a test asks for less: a loaded machine can pause a process for
seconds, and a lease that lapses then fails a test that never meant it to.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..support.live_server import LiveServer
from ..support.server_api import admin
from ..support.ui import chromium


@pytest.fixture
def live_server(tmp_path: Path, db_url: str) -> Iterator[LiveServer]:
    """A real server process on 127.0.0.1 over each database dialect."""
    server = LiveServer(tmp_path / "server", db_url).start()
    yield server
    server.stop()


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A real server process on its embedded SQLite database (one dialect, for speed)."""
    server = LiveServer(tmp_path / "server").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server process for a whole module whose tests do not interfere (each drives its
    own runs); a module whose tests need a server each defines its own ``server``."""
    server = LiveServer(tmp_path_factory.mktemp("shared-server")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium for one module's UI tests (tests/support/ui.py)."""
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def tokens(server: LiveServer) -> dict[str, str]:
    """A token of each role the UI tests sign in with, on the module's server."""
    api = admin(server)
    try:
        # The UI tests' workers are hosts ui-*, all on one token: a pattern binding.
        return {role: api.token(f"ui-{role}", role, ["ui-*"] if role == "worker" else None)
                for role in ("viewer", "user", "worker")}
    finally:
        api.close()
