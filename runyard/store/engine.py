"""Engines for the two dialects, with the settings Runyard relies on."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from runyard import errors, local
from runyard.store.prepared import execute_raw

#: Seconds a writer waits for SQLite's lock before giving up.
SQLITE_BUSY_TIMEOUT_S = 30.0
#: A pooled PostgreSQL connection idle for longer than this is pinged before it is used.
PG_PING_IDLE_S = 1.0


def sqlite_url(path: str | os.PathLike[str]) -> str:
    return f"sqlite:///{Path(path).expanduser().resolve()}"


def create_engine(url: str, **kwargs: Any) -> sa.Engine:
    """Create an engine for ``sqlite:///file`` or ``postgresql+psycopg://...``."""
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError as exc:
        raise errors.ConfigError(f"database URL: cannot parse {url!r}") from exc
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, parsed, **kwargs)
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        engine = sa.create_engine(parsed, **{"pool_size": 8, "max_overflow": 32, **kwargs})
        _ping_when_idle(engine, PG_PING_IDLE_S)
        return engine
    raise errors.ConfigError(
        f"database URL: unsupported backend {parsed.get_backend_name()!r} "
        "(use sqlite:///path or postgresql+psycopg://...)"
    )


def _ping_when_idle(engine: sa.Engine, idle_s: float) -> None:
    """Ping a pooled connection before use when it sat idle longer than ``idle_s``; if the
    server closed it (a restart, an idle-session timeout), the pool drops it and every
    connection made before it, and connects anew.

    Instead of ``pool_pre_ping``, which pings at every checkout: a round trip on each
    transaction, 5-8% of a claim batch. A connection in use a moment ago is alive; if the
    server went down in between, that one call fails and the pool discards its
    connections, as it would had the server gone down during the call.
    """

    @sa.event.listens_for(engine, "checkin")
    def _checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since <= idle_s:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as exc:
            # A server that closed one connection closed the others made before it: the
            # pool drops them all, as pool_pre_ping does. Other errors would only repeat.
            if engine.dialect.is_disconnect(exc, dbapi_conn, None):
                raise sa.exc.InvalidatePoolError(str(exc)) from exc
            raise


def _sqlite_engine(url: str, parsed: sa.URL, **kwargs: Any) -> sa.Engine:
    if parsed.database in (None, "", ":memory:"):
        raise errors.ConfigError("database URL: SQLite needs a file (sqlite:///path/runyard.db)")
    local.ensure_data_dir(Path(parsed.database).parent)  # usually the data directory
    engine = sa.create_engine(
        url,
        # We issue BEGIN ourselves (below); the driver must not.
        connect_args={"isolation_level": None, "timeout": SQLITE_BUSY_TIMEOUT_S,
                      "check_same_thread": False},
        pool_size=8,
        max_overflow=64,
        # The connection used last has the freshest page cache: each SQLite connection keeps
        # its own, and one that sat idle while others wrote reloads every page they changed
        # (taken in turn, idle connections made a claim about a quarter slower).
        pool_use_lifo=True,
        **kwargs,
    )

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # FULL: an acknowledged write is on disk before we answer, so neither a process
        # crash nor a power cut loses it (NORMAL would only survive the former).
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # Writers take the lock up front so a read-then-write transaction can never fail with
        # SQLITE_BUSY half-way; readers use a deferred BEGIN and never block writers (WAL).
        # On the driver's cursor: every write (a claim, a metrics batch) begins here, and
        # Connection.exec_driver_sql's bookkeeping cost more than the statement.
        sql = "BEGIN" if conn.get_execution_options().get("readonly") else "BEGIN IMMEDIATE"
        execute_raw(conn, sql, ()).close()

    return engine
