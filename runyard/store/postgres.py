"""PostgreSQL: the engine's settings, and the SQL this database writes its own way.

Row locks, and ``SKIP LOCKED`` so that concurrent claimers never wait on each other.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from runyard.store import claims, ingest, rollups
from runyard.store.base import Grant
from runyard.store.dialect import Dialect, Write
from runyard.store.metrics import POINT_COLUMNS, POINT_UPSERT
from runyard.store.sql import SQLStore

#: A pooled connection idle for longer than this is pinged before it is used.
PING_IDLE_S = 1.0
_POINTS_SQL = (f"INSERT INTO metric_points ({', '.join(POINT_COLUMNS)}) "
               f"VALUES ({', '.join(['%s'] * len(POINT_COLUMNS))}) {POINT_UPSERT}")


def create_engine(url: sa.URL, **kwargs: Any) -> sa.Engine:
    """An engine for the PostgreSQL database at ``url`` (through psycopg 3)."""
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    engine = sa.create_engine(url, **{"pool_size": 8, "max_overflow": 32, **kwargs})
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: sa.Engine) -> None:
    """Ping a pooled connection before use when it sat idle longer than
    :data:`PING_IDLE_S`; if the server closed it (a restart, an idle-session timeout), the
    pool drops it and every connection made before it, and connects anew.

    Instead of ``pool_pre_ping``, which pings at every checkout: a round trip on each
    transaction. A connection in use a moment ago is alive; if the server went down in
    between, that one call fails and the pool discards its connections, as it would had the
    server gone down during the call.
    """

    @sa.event.listens_for(engine, "checkin")
    def _checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since <= PING_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as exc:
            # A server that closed one connection closed the others made before it: the
            # pool drops them all, as pool_pre_ping does. Other errors would only repeat.
            if engine.dialect.is_disconnect(exc, dbapi_conn, None):
                raise sa.exc.InvalidatePoolError(str(exc)) from exc
            raise


class PostgresDialect(Dialect):
    mark = "%s"

    def insert(self, table: sa.Table) -> Any:
        return postgresql.insert(table)

    def claim_runs(self, conn: sa.Connection, grants: Sequence[Grant]) -> int:
        return claims.postgres_claim_runs(conn, grants)

    def point_writes(self, run_id: str, attempt: int, batch: ingest.Batch) -> list[Write]:
        # Handed to the driver's executemany as tuples: SQLAlchemy's per-row parameter
        # processing would cost more than the insert.
        return [Write(_POINTS_SQL, batch.rows(run_id, attempt), many=True)]

    def rollup_writes(self, run_id: str, aggs: tuple[list[rollups.Blocks],
                                                     list[rollups.RollupRow]]) -> list[Write]:
        blocks, others = aggs
        merged = [(run_id, *r) for b in blocks for r in b.rows()]
        merged += [(run_id, *r) for r in others]
        return [Write(rollups.upsert_sql(self.mark), merged, many=True)] if merged else []

    def contains(self, column: Any, text: str) -> sa.ColumnElement[bool]:
        return sa.func.strpos(sa.cast(column, sa.Text), sa.literal(text, sa.Text)) > 0

    def estimated_rows(self, conn: sa.Connection, table: str) -> int | None:
        # The planner's estimate, kept fresh by autovacuum.
        est = conn.execute(sa.text("SELECT reltuples::bigint FROM pg_class WHERE relname = :t"),
                           {"t": table}).scalar()
        return None if est is None else int(est)


class PostgresStore(SQLStore):
    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(engine, PostgresDialect())


#: The store class of this database, for :func:`runyard.store.open_store`.
STORE = PostgresStore
