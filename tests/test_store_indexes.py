"""The partial indexes are usable by the queries they exist for, on both dialects.

A partial index serves a query only when the planner can prove the query's condition implies
the index's; spelled as a bound parameter (``status = ?``) it cannot, and the claim would fall
back to another index and sort every queued run. PostgreSQL is told not to scan tables
sequentially, since with a handful of rows it would rather, whatever the indexes, and plans
the statement without its parameters' values (as it does a statement the driver prepared).
"""

from __future__ import annotations

from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from runyard.store import sql as store_sql
from runyard.store.sql import SQLStore


def _plan(store: SQLStore, stmt: sa.Select[Any], values: dict[str, Any]) -> str:
    engine = store.engine
    compiled = stmt.compile(dialect=engine.dialect)
    params = compiled.construct_params(values)
    with engine.connect() as conn:
        cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        if engine.dialect.name == "sqlite":
            cur.execute("EXPLAIN QUERY PLAN " + compiled.string,
                        [params[name] for name in compiled.positiontup or ()])
            return "\n".join(str(row[-1]) for row in cur.fetchall())
        # As a prepared statement's generic plan (what the driver runs a statement as once
        # it has run a few times): planned without the parameters' values.
        generic = stmt.compile(dialect=postgresql.psycopg.dialect(paramstyle="numeric_dollar"))
        values = [params[name] for name in generic.positiontup or ()]
        # Bound on this side: the statement's own $n are PREPARE's, not the protocol's.
        cur = psycopg.ClientCursor(conn.connection.driver_connection)  # type: ignore[arg-type]
        cur.execute("SET enable_seqscan = off")
        cur.execute("SET plan_cache_mode = force_generic_plan")
        cur.execute("PREPARE planned AS " + generic.string)
        args = ", ".join(["%s"] * len(values))
        cur.execute(f"EXPLAIN EXECUTE planned({args})" if values else
                    "EXPLAIN EXECUTE planned", values)
        return "\n".join(str(row[0]) for row in cur.fetchall())


def test_claim_candidates_read_the_queued_runs_index(store: SQLStore) -> None:
    stmt = store_sql._candidates_stmt(cpu_only=True, skip_prefer_cuda=False, keyset=True,
                                      by_labels=False)
    plan = _plan(store, stmt, {"w_gpus": 0, "w_vram": 0.0, "w_ram": 8.0, "w_cpus": 4.0,
                               "a_prio": 0, "a_created": 0.0, "a_id": "", "limit": 8})
    assert "ix_runs_claim" in plan, plan
    if store.engine.dialect.name == "sqlite":
        assert "TEMP B-TREE" not in plan, plan  # read in the claim's order, not sorted


def test_lapsed_lease_sweep_reads_the_active_attempts_index(store: SQLStore) -> None:
    att = store_sql.attempts.c
    stmt = (sa.select(att.id).where(store_sql.ACTIVE_ONLY, att.lease_expires_at < 5.0)
            .order_by(att.lease_expires_at).limit(10))
    plan = _plan(store, stmt, {})
    assert "ix_attempts_active_lease" in plan, plan


def test_queued_runs_listing_reads_the_queued_runs_index(store: SQLStore) -> None:
    c = store_sql.runs.c
    stmt = (sa.select(c.id).where(store_sql.QUEUED_ONLY)
            .order_by(c.priority.desc(), c.created_at, c.id).limit(10))
    plan = _plan(store, stmt, {})
    assert "ix_runs_claim" in plan, plan
