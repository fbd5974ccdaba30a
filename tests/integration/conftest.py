"""Integration fixtures: the store and the queue on each dialect, and the real app in process
over a real SQLite file for the HTTP API's contract tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runyard.queue import Queue
from runyard.store import Store, open_store

from ..conftest import fresh_database
from ..support.app_server import AppServer
from ..support.server_api import Api, admin


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = open_store(db_url, upgrade=False)
    yield s
    s.close()


@pytest.fixture
def queue(store: Store) -> Queue:
    return Queue(store, stale_after_s=60)


@pytest.fixture
def app_server(tmp_path: Path) -> Iterator[AppServer]:
    """A fresh app on its own SQLite file, for a test that changes state."""
    server = AppServer(tmp_path / "server").start()
    yield server
    server.stop()


@pytest.fixture
def dialect_app(db_url: str, tmp_path: Path) -> Iterator[AppServer]:
    """A fresh app on a fresh database of each dialect (SQLite, PostgreSQL)."""
    server = AppServer(tmp_path / "server", db_url=db_url).start()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared_dialect_app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                       ) -> Iterator[AppServer]:
    """One app of each dialect for a whole module whose tests each drive their own runs on
    their own hosts; ``settings.db_url`` is its database."""
    data_dir = tmp_path_factory.mktemp(f"shared-{request.param}-app")
    url = fresh_database(request, request.param, data_dir)
    server = AppServer(data_dir / "server", db_url=url).start()
    yield server
    server.stop()


@pytest.fixture
def shared_admin(shared_dialect_app: AppServer) -> Iterator[Api]:
    """The operator on the module's app of each dialect (``shared_dialect_app``)."""
    client = admin(shared_dialect_app)
    yield client
    client.close()


@pytest.fixture(scope="module")
def shared_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    """One app for a whole module: tests that only read, send bad input or use their own runs."""
    server = AppServer(tmp_path_factory.mktemp("shared-app")).start()
    yield server
    server.stop()
