"""The partial indexes are usable by the queries they exist for, on both dialects.

A partial index serves a query only when the planner can prove the query's condition implies
the index's; spelled as a bound parameter (``status = ?``) it cannot, and the claim would fall
back to another index and sort every queued run. PostgreSQL is told not to scan tables
sequentially, since with a handful of rows it would rather, whatever the indexes, and plans
the statement without its parameters' values (as it does a statement the driver prepared).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from runyard.store import claims, schema
from runyard.store.sql import SQLStore

from ..conftest import fresh_database


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database no other test used: a reused one keeps the table statistics of its last
    test, and with them the planner may choose another index."""
    return fresh_database(request, request.param, tmp_path, reused=False)


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


_WORKER = {"w_gpus": 0, "w_vram": 0.0, "w_ram": 8.0, "w_cpus": 4.0, "a_prio": 0,
           "a_created": 0.0, "a_id": "", "limit": 8, "w_executor": "agent",
           **{name: "" for name in claims.LABEL_BINDS}}


@pytest.mark.parametrize("skip_prefer_cuda", [False, True])
@pytest.mark.parametrize("by_labels", [False, True])
@pytest.mark.parametrize("keyset", [False, True])
def test_a_cpu_hosts_claim_reads_the_index_without_cuda_runs(
        store: SQLStore, skip_prefer_cuda: bool, by_labels: bool, keyset: bool) -> None:
    stmt = claims.candidates_stmt(cpu_only=True, skip_prefer_cuda=skip_prefer_cuda,
                                      keyset=keyset, by_labels=by_labels)
    plan = _plan(store, stmt, _WORKER)
    assert "ix_runs_claim_cpu" in plan, plan
    if store.engine.dialect.name == "sqlite":
        assert "TEMP B-TREE" not in plan, plan  # read in the claim's order, not sorted


@pytest.mark.parametrize("by_labels", [False, True])
@pytest.mark.parametrize("keyset", [False, True])
def test_a_cuda_hosts_claim_reads_the_queued_runs_index(
        store: SQLStore, by_labels: bool, keyset: bool) -> None:
    stmt = claims.candidates_stmt(cpu_only=False, skip_prefer_cuda=False, keyset=keyset,
                                      by_labels=by_labels)
    plan = _plan(store, stmt, _WORKER)
    assert "ix_runs_claim " in plan or plan.endswith("ix_runs_claim"), plan
    if store.engine.dialect.name == "sqlite":
        assert "TEMP B-TREE" not in plan, plan


def test_lapsed_lease_sweep_reads_the_active_attempts_index(store: SQLStore) -> None:
    att = schema.attempts.c
    stmt = (sa.select(att.id).where(schema.ACTIVE_ONLY, att.lease_expires_at < 5.0)
            .order_by(att.lease_expires_at).limit(10))
    plan = _plan(store, stmt, {})
    assert "ix_attempts_active_lease" in plan, plan


def test_queued_runs_listing_reads_the_queued_runs_index(store: SQLStore) -> None:
    c = schema.runs.c
    stmt = (sa.select(c.id).where(schema.QUEUED_ONLY)
            .order_by(c.priority.desc(), c.created_at, c.id).limit(10))
    plan = _plan(store, stmt, {})
    assert "ix_runs_claim" in plan, plan
