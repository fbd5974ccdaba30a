"""The test databases on PostgreSQL that are handed from test to test (tests/conftest.py
``PgDatabases``): the next test gets an empty database at the template's revision, with its
sequences restarted, and one whose shape a test changed is dropped instead."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from runyard.queue import Queue
from runyard.store import open_store

from ..conftest import PG_ADMIN_URL, PG_AVAILABLE, PgDatabases

pytestmark = pytest.mark.skipif(not PG_AVAILABLE, reason="PostgreSQL is not reachable")


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def _revision(url: str) -> list[tuple[str]]:
    with psycopg.connect(_plain(url)) as conn:
        return conn.execute("SELECT version_num FROM alembic_version").fetchall()


def _rows(url: str) -> dict[str, int]:
    with psycopg.connect(_plain(url)) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'alembic_version'")]
        return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]  # type: ignore[index]
                for t in tables}


def _filled(url: str) -> None:
    store = open_store(url, upgrade=False)
    try:
        queue = Queue(store, stale_after_s=60)
        for name in ("left-behind", "and-another"):
            queue.submit({"name": name, "command": ["true"]})
    finally:
        store.close()


@pytest.fixture(scope="module")
def dbs() -> Iterator[PgDatabases]:
    """A pool of this module's own, so what it hands on is known."""
    pool = PgDatabases()
    yield pool
    pool.drop_all()


def test_a_database_given_back_comes_back_empty_at_its_revision(dbs: PgDatabases) -> None:
    url = dbs.new()
    before, revision = _rows(url), _revision(url)
    _filled(url)
    assert sum(_rows(url).values()) > sum(before.values())
    # A connection the test left open is ended, as a drop would end it.
    left_open = psycopg.connect(_plain(url))
    dbs.drop(url)
    again = dbs.new()
    assert again == url  # the same database, handed on
    assert _rows(again) == before and not any(before.values())
    assert _revision(again) == revision and len(revision) == 1
    with pytest.raises(psycopg.OperationalError):
        left_open.execute("SELECT 1")
    # Sequences start again: the same work gives the same ids as on a new database.
    _filled(again)
    fresh = dbs.new(reused=False)
    _filled(fresh)
    with psycopg.connect(_plain(again)) as a, psycopg.connect(_plain(fresh)) as b:
        q = "SELECT max(id) FROM events"
        assert a.execute(q).fetchone() == b.execute(q).fetchone()


@pytest.mark.parametrize("change", [
    "CREATE INDEX ix_extra ON runs (name)",
    "ALTER TABLE runs ADD COLUMN extra text",
    "UPDATE alembic_version SET version_num = 'elsewhere'",
    "CREATE SCHEMA extra",
])
def test_a_database_whose_shape_changed_is_dropped_not_handed_on(dbs: PgDatabases,
                                                                 change: str) -> None:
    url = dbs.new()
    with psycopg.connect(_plain(url), autocommit=True) as conn:
        conn.execute(change)
    dbs.drop(url)
    assert dbs.new() != url
    with psycopg.connect(PG_ADMIN_URL) as admin:
        gone = admin.execute("SELECT count(*) FROM pg_database WHERE datname = %s",
                             (url.rsplit("/", 1)[1],)).fetchone()
    assert gone == (0,)
