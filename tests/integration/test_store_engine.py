"""PostgreSQL connections in the pool: a connection idle for a while is pinged before use and
replaced when the server closed it; one in use a moment ago is trusted (no round trip).

The machine's real PostgreSQL; the server closes a connection through
``pg_terminate_backend``, as it does on a restart or an idle-session timeout.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest
import sqlalchemy as sa

from runyard.store import engine as engine_mod
from runyard.store import postgres
from tests.conftest import PG_ADMIN_URL, PgDatabases


@pytest.fixture
def pg_url(pg_databases: PgDatabases) -> str:
    return pg_databases.new(migrated=False)


def make_engine(url: str, idle_s: float, monkeypatch: pytest.MonkeyPatch, pool_size: int = 1
                ) -> tuple[sa.Engine, list[int]]:
    """An engine made as the store makes it, with the ping's idle time set, and a count of
    the pings it sends."""
    monkeypatch.setattr(postgres, "PING_IDLE_S", idle_s)
    engine = engine_mod.create_engine(url, pool_size=pool_size, max_overflow=0)
    pings: list[int] = []
    real_ping = engine.dialect.do_ping

    def counted(dbapi_conn: object) -> bool:
        pings.append(1)
        return real_ping(dbapi_conn)  # type: ignore[arg-type]

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    return engine, pings


def backend_pid(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


def terminate(pid: int) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)


@pytest.fixture
def engines() -> Iterator[list[sa.Engine]]:
    made: list[sa.Engine] = []
    yield made
    for e in made:
        e.dispose()


def test_an_idle_connection_the_server_closed_is_replaced(
        pg_url: str, monkeypatch: pytest.MonkeyPatch, engines: list[sa.Engine]) -> None:
    engine, pings = make_engine(pg_url, 0.0, monkeypatch)
    engines.append(engine)
    first = backend_pid(engine)
    terminate(first)
    second = backend_pid(engine)  # no error: the ping found it closed
    assert second != first
    assert pings, "the idle connection was not pinged"


def test_one_closed_idle_connection_drops_the_others_made_before_it(
        pg_url: str, monkeypatch: pytest.MonkeyPatch, engines: list[sa.Engine]) -> None:
    """A restart closes every connection: the first ping that finds one closed makes the pool
    reconnect them all, without pinging each (nor failing a call on one used lately)."""
    engine, pings = make_engine(pg_url, 0.2, monkeypatch, pool_size=2)
    engines.append(engine)

    def both_pids() -> set[int]:
        with engine.connect() as a, engine.connect() as b:
            return {int(c.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
                    for c in (a, b)}

    old = both_pids()
    assert len(old) == 2
    time.sleep(0.3)
    for pid in old:
        terminate(pid)
    new = both_pids()
    assert len(new) == 2 and not new & old
    assert pings == [1]


def test_a_connection_used_a_moment_ago_is_not_pinged(
        pg_url: str, monkeypatch: pytest.MonkeyPatch, engines: list[sa.Engine]) -> None:
    engine, pings = make_engine(pg_url, 60.0, monkeypatch)
    engines.append(engine)
    pids = {backend_pid(engine) for _ in range(5)}
    assert pids and len(pids) == 1
    assert pings == []


def test_a_recent_connection_the_server_closed_fails_one_call_only(
        pg_url: str, monkeypatch: pytest.MonkeyPatch, engines: list[sa.Engine]) -> None:
    """The price of not pinging every time, bounded: the call that meets the closed
    connection fails, and the pool has let it go for the next one."""
    engine, _ = make_engine(pg_url, 60.0, monkeypatch)
    engines.append(engine)
    first = backend_pid(engine)
    terminate(first)
    with pytest.raises(sa.exc.OperationalError):
        backend_pid(engine)
    assert backend_pid(engine) != first
