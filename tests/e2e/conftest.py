"""End-to-end fixtures: the real server on 127.0.0.1, agents and a headless browser.

A test's server runs on a thread of the test's process (:class:`ThreadServer`) unless the test
is about the server process itself (start-up, signals, kills, outages): those use
:class:`LiveServer`, a ``runyard server`` process, as ``server_process`` or directly.

Leases last 120 s unless a test asks for less (``@pytest.mark.lease(seconds)`` on a test or a
module): a loaded machine can pause a process for seconds, and a lease that lapses then fails a
test that never meant it to.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runyard.sdk import http_sink

from ..support.agents import AgentProc, Api
from ..support.live_server import LiveServer
from ..support.server_api import admin
from ..support.thread_server import ThreadServer
from ..support.ui import chromium


@pytest.fixture
def live_server(tmp_path: Path, db_url: str) -> Iterator[ThreadServer]:
    """A server on 127.0.0.1 over each database dialect."""
    server = ThreadServer(tmp_path / "server", db_url).start()
    yield server
    server.stop()


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[ThreadServer]:
    """A server on 127.0.0.1 on its embedded SQLite database (one dialect, for speed)."""
    server = ThreadServer(tmp_path / "server").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadServer]:
    """One server for a whole module whose tests do not interfere (each drives its own
    runs); a module whose tests need a server each defines its own ``server``."""
    server = ThreadServer(tmp_path_factory.mktemp("shared-server")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One ``runyard server`` process for a whole module whose tests kill or restart it
    (``@pytest.fixture(scope="module") def server(server_process): ...``)."""
    server = LiveServer(tmp_path_factory.mktemp("shared-server")).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _sdk_close_waits_for_a_loaded_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """An HTTP-mode run's ``close()`` waits up to 5 s for the server to take what is left, then
    leaves the rest spooled for ``runyard sync``: on a loaded machine a reachable server can
    take longer than that. Tests of that wait set it themselves."""
    monkeypatch.setattr(http_sink, "CLOSE_WAIT_S", 60.0)


@pytest.fixture
def own_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ThreadServer]:
    """A server for this test alone: for modules whose tests start agents (an agent claims
    whatever is queued, so no other test's runs may be there), which say so with
    ``@pytest.fixture def server(own_server): return own_server``."""
    marker = request.node.get_closest_marker("lease")
    stale_after_s = float(marker.args[0]) if marker else 120.0
    server = ThreadServer(tmp_path / "server", stale_after_s=stale_after_s).start()
    yield server
    server.stop()


@pytest.fixture
def api(server: ThreadServer) -> Iterator[Api]:
    """A client of the module's ``server`` for the agent tests (tests/support/agents.py)."""
    client = Api(server)
    yield client
    client.close()


@pytest.fixture
def agents() -> Iterator[list[AgentProc]]:
    """Agent processes a test starts; each is stopped when the test ends."""
    started: list[AgentProc] = []
    yield started
    for agent in started:
        agent.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium for one module's UI tests (tests/support/ui.py). Not one per
    session: Playwright's sync API keeps an event loop running on the test thread while it
    is open, and the later tests of that process that call ``asyncio.run`` would fail."""
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def tokens(server: ThreadServer) -> dict[str, str]:
    """A token of each role the UI tests sign in with, on the module's server."""
    api = admin(server)
    try:
        # The UI tests' workers are hosts ui-*, all on one token: a pattern binding.
        return {role: api.token(f"ui-{role}", role, ["ui-*"] if role == "worker" else None)
                for role in ("viewer", "user", "worker")}
    finally:
        api.close()
