"""The SQL of a claim: what a batch of claims reads (candidate runs, worker rows, free CUDA
slots), and the claim's writes on each database, side by side.

These are the store's hottest statements, so they are :class:`Prepared` (compiled once, run
on the driver's cursor). The reads are the same on both databases; the writes are not:
SQLite runs three ``executemany`` (a statement costs it microseconds, with no round trip),
while PostgreSQL writes the whole batch in one statement over arrays, one round trip.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from runyard.eligibility import SQL_LABEL_KEYS
from runyard.store.base import Grant, Row, WorkerFilter
from runyard.store.prepared import Prepared, execute_raw
from runyard.store.schema import QUEUED_ONLY, attempts, events, host_policies, runs, workers

#: Hosts one worker-rows query reads at most.
_HOSTS_PER_QUERY = 64


def workers_stmt() -> sa.Select[Any]:
    """Workers with their host policy (and their count of active attempts, a column)."""
    return (sa.select(workers, host_policies.c.allow, host_policies.c.deny,
                      host_policies.c.slots.label("policy_slots"),
                      host_policies.c.labels.label("policy_labels"))
            .select_from(workers.outerjoin(host_policies,
                                           host_policies.c.host_id == workers.c.host_id)))


# ---------------------------------------------------------------------------- reads
# Constraints come as their JSON text: runs share a few distinct ones, so the claim decodes
# and judges each distinct text once, not every candidate row.
# `attempt` and `event_seq` are what the claim's conditional write expects to find.
_CANDIDATE_COLS = (runs.c.id, runs.c.name, runs.c.blueprint, runs.c.executor, runs.c.priority,
                   runs.c.created_at, sa.cast(runs.c.constraints, sa.Text).label("constraints"),
                   runs.c.prefer_cuda, runs.c.require_cuda, runs.c.gpus, runs.c.attempt,
                   runs.c.event_seq)

LABEL_BINDS = tuple(f"w_labels_{i}" for i in range(SQL_LABEL_KEYS))


def candidates_stmt(cpu_only: bool, skip_prefer_cuda: bool, keyset: bool,
                    by_labels: bool) -> sa.Select[Any]:
    """Queued runs a worker's resources can serve, best first; one statement per variant."""
    c = runs.c
    stmt = sa.select(*_CANDIDATE_COLS).where(
        QUEUED_ONLY,
        # A worker takes only the runs of its own executor (docs/executors.md).
        c.executor == sa.bindparam("w_executor", type_=sa.String),
        c.gpus <= sa.bindparam("w_gpus", type_=sa.Integer),
        c.min_vram_gib <= sa.bindparam("w_vram", type_=sa.Float),
        c.min_ram_gib <= sa.bindparam("w_ram", type_=sa.Float),
        c.min_cpus <= sa.bindparam("w_cpus", type_=sa.Float),
    )
    if cpu_only:
        stmt = stmt.where(c.require_cuda == sa.false())
    if skip_prefer_cuda:
        stmt = stmt.where(c.prefer_cuda == sa.false())
    if by_labels:
        stmt = stmt.where(c.labels_key.in_(
            [sa.bindparam(name, type_=sa.Text) for name in LABEL_BINDS]))
    if keyset:
        prio = sa.bindparam("a_prio", type_=sa.Integer)
        created = sa.bindparam("a_created", type_=c.created_at.type)
        rid = sa.bindparam("a_id", type_=c.id.type)
        stmt = stmt.where(sa.or_(
            c.priority < prio,
            sa.and_(c.priority == prio, c.created_at > created),
            sa.and_(c.priority == prio, c.created_at == created, c.id > rid),
        ))
    # SQLite renders no FOR UPDATE (BEGIN IMMEDIATE already excludes other writers).
    return (stmt.order_by(c.priority.desc(), c.created_at, c.id)
            .limit(sa.bindparam("limit", type_=sa.Integer)).with_for_update(skip_locked=True))


def candidates_query(worker: WorkerFilter, after: tuple[int, float, str] | None,
                     limit: int) -> tuple[Prepared, dict[str, Any]]:
    """The candidates query of this worker's variant, and its binds."""
    variant = (not worker.has_cuda, worker.skip_prefer_cuda, after is not None,
               worker.labels_keys is not None)
    params: dict[str, Any] = {"w_gpus": worker.gpus, "w_vram": worker.max_vram_gib,
                              "w_ram": worker.ram_gib, "w_cpus": worker.cpus, "limit": limit,
                              "w_executor": worker.executor}
    if worker.labels_keys is not None:
        params.update(zip(LABEL_BINDS, worker.labels_keys, strict=True))
    if after is not None:
        params.update(a_prio=after[0], a_created=after[1], a_id=after[2])
    stmt = Prepared.cached(("claim_candidates", *variant),
                           lambda: Prepared(candidates_stmt(*variant)))
    return stmt, params


def _workers_in(count: int) -> Prepared:
    """Worker rows of ``count`` hosts (binds ``h0``...): one statement per power of two, the
    unused binds repeating a host."""
    return Prepared.cached(("workers_in", count), lambda: Prepared(workers_stmt().where(
        workers.c.host_id.in_([sa.bindparam(f"h{i}", type_=sa.String) for i in range(count)]))))


def workers_queries(host_ids: Sequence[str]) -> list[tuple[Prepared, dict[str, Any]]]:
    """The queries (and their binds) that read these workers' rows."""
    ids = list(dict.fromkeys(host_ids))
    out = []
    for start in range(0, len(ids), _HOSTS_PER_QUERY):
        part = ids[start:start + _HOSTS_PER_QUERY]
        size = 1 << (len(part) - 1).bit_length()
        out.append((_workers_in(size),
                    {f"h{i}": part[min(i, len(part) - 1)] for i in range(size)}))
    return out


def by_host(results: Sequence[list[Row]]) -> dict[str, Row]:
    """The rows of :func:`workers_queries`, by host id."""
    return {row["host_id"]: row for rows in results for row in rows}


def _cuda_free_stmt() -> sa.Select[Any]:
    active = workers.c.active_attempts
    slots = sa.func.coalesce(host_policies.c.slots, workers.c.slots)
    return (sa.select(workers.c.host_id, (slots - active).label("free"))
            .select_from(workers.outerjoin(host_policies,
                                           host_policies.c.host_id == workers.c.host_id))
            .where(workers.c.has_cuda == sa.true(), workers.c.drained == sa.false(),
                   workers.c.last_seen_at >= sa.bindparam("seen_after", type_=sa.Float),
                   active < slots))


#: The free slots of undrained CUDA workers seen after ``seen_after``.
CUDA_FREE = Prepared(_cuda_free_stmt())


# ---------------------------------------------------------------------------- writes, SQLite
# Each statement runs once per batch with one row of values per claimed run.
_SQLITE_CLAIM_RUNS = Prepared(
    runs.update()
    .where(runs.c.id == sa.bindparam("g_run_id", type_=sa.String),
           runs.c.status == "queued",
           runs.c.event_seq == sa.bindparam("g_prev_seq", type_=sa.Integer))
    .values(status="claimed", attempt_id=sa.bindparam("g_attempt_id", type_=sa.String),
            host_id=sa.bindparam("g_host_id", type_=sa.String),
            attempt=sa.bindparam("g_number", type_=sa.Integer),
            event_seq=sa.bindparam("g_seq", type_=sa.Integer),
            updated_at=sa.bindparam("g_at", type_=runs.c.updated_at.type),
            status_updated_at=sa.bindparam("g_at", type_=runs.c.updated_at.type),
            stop_intent=None, stop_requested_at=None, stop_deadline=None, stalled=False,
            termination_reason=None, exit_code=None, ended_at=None))
_ATTEMPT_KEYS = ("id", "run_id", "number", "host_id", "lease", "lease_expires_at", "active",
                 "claimed_at", "token_hash")
_SQLITE_INSERT_ATTEMPTS = Prepared(attempts.insert(), column_keys=_ATTEMPT_KEYS)
_EVENT_KEYS = ("run_id", "seq", "attempt", "at", "kind", "status", "actor", "details")
_SQLITE_INSERT_EVENTS = Prepared(events.insert(), column_keys=_EVENT_KEYS)


def sqlite_claim_runs(conn: sa.Connection, grants: Sequence[Grant]) -> int:
    """Claim on SQLite; returns how many runs changed (attempts and events are written for
    every grant: a shortfall refuses the whole batch, and the caller rolls it back)."""
    changed = _SQLITE_CLAIM_RUNS.run_many(conn, [
        {"g_run_id": g.run_id, "g_prev_seq": g.seq - 1, "g_attempt_id": g.attempt_id,
         "g_host_id": g.host_id, "g_number": g.number, "g_seq": g.seq, "g_at": g.at}
        for g in grants])
    if changed != len(grants):
        return changed
    _SQLITE_INSERT_ATTEMPTS.run_many(conn, [
        {"id": g.attempt_id, "run_id": g.run_id, "number": g.number, "host_id": g.host_id,
         "lease": g.lease, "lease_expires_at": g.lease_expires_at, "active": True,
         "claimed_at": g.at, "token_hash": g.token_hash} for g in grants])
    _SQLITE_INSERT_EVENTS.run_many(conn, [
        {"run_id": g.run_id, "seq": g.seq, "attempt": g.number, "at": g.at,
         "kind": "status", "status": "claimed", "actor": g.actor,
         "details": {"worker": g.host_id}} for g in grants])
    return changed


# ---------------------------------------------------------------------------- writes, PostgreSQL
# One statement over arrays (one element per claim): psycopg's executemany costs about a
# round trip per row. The `= ANY` repeats the join on ids so that the planner reads the runs
# by primary key. A run must still be as the claim read it: its event_seq moves with every
# status change (each appends an event), so no status test is needed, and one on `status`
# would lead the planner to scan every queued run in the status index. Attempts and events
# are written for the runs updated, and the count of those tells the caller whether all were.
_POSTGRES_CLAIM_RUNS = """
WITH g AS (
    SELECT * FROM unnest(%(run_id)s::varchar[], %(attempt_id)s::varchar[],
                         %(host_id)s::varchar[], %(number)s::int[], %(seq)s::int[],
                         %(at)s::float8[], %(lease)s::varchar[], %(expires)s::float8[],
                         %(actor)s::varchar[], %(details)s::text[], %(token_hash)s::varchar[])
        AS g(run_id, attempt_id, host_id, number, seq, at, lease, expires, actor, details,
             token_hash)
), claimed AS (
    UPDATE runs SET status = 'claimed', attempt_id = g.attempt_id, host_id = g.host_id,
        attempt = g.number, event_seq = g.seq, updated_at = g.at, status_updated_at = g.at,
        stop_intent = NULL,
        stop_requested_at = NULL, stop_deadline = NULL, stalled = false,
        termination_reason = NULL, exit_code = NULL, ended_at = NULL
    FROM g
    WHERE runs.id = g.run_id AND runs.event_seq = g.seq - 1
        AND runs.id = ANY(%(run_id)s::varchar[])
    RETURNING runs.id
), new_attempts AS (
    INSERT INTO attempts (id, run_id, number, host_id, lease, lease_expires_at, active,
                          claimed_at, token_hash)
    SELECT g.attempt_id, g.run_id, g.number, g.host_id, g.lease, g.expires, true, g.at,
        g.token_hash
    FROM g JOIN claimed ON claimed.id = g.run_id
), new_events AS (
    INSERT INTO events (run_id, seq, attempt, at, kind, status, actor, details)
    SELECT g.run_id, g.seq, g.number, g.at, 'status', 'claimed', g.actor, g.details::json
    FROM g JOIN claimed ON claimed.id = g.run_id
)
SELECT count(*) FROM claimed
"""


def postgres_claim_runs(conn: sa.Connection, grants: Sequence[Grant]) -> int:
    """Claim on PostgreSQL; returns how many runs changed (and got their attempt and event)."""
    g = grants
    cur = execute_raw(conn, _POSTGRES_CLAIM_RUNS, {
        "run_id": [x.run_id for x in g], "attempt_id": [x.attempt_id for x in g],
        "host_id": [x.host_id for x in g], "number": [x.number for x in g],
        "seq": [x.seq for x in g], "at": [x.at for x in g], "lease": [x.lease for x in g],
        "expires": [x.lease_expires_at for x in g], "actor": [x.actor for x in g],
        "details": [json.dumps({"worker": x.host_id}) for x in g],
        "token_hash": [x.token_hash for x in g]})
    try:
        return int(cur.fetchone()[0])
    finally:
        cur.close()
