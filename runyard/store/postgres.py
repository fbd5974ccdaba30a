"""PostgreSQL: row locks, and ``SKIP LOCKED`` so concurrent claimers never wait on each other."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from runyard import errors
from runyard.store import base
from runyard.store.prepared import execute_raw
from runyard.store.sql import SQLStore, SQLTransaction

# A batch of claims as one statement over arrays (one element per claim), in one round trip:
# psycopg's executemany costs about a round trip per row. The `= ANY` repeats the join on
# ids so that the planner reads the runs by primary key. A run must still be as the claim
# read it: its event_seq moves with every status change (each appends an event), so no
# status test is needed, and one on `status` would lead the planner to scan every queued
# run in the status index. Attempts and events are written for the runs updated, and the
# count of those tells the caller whether all were.
_CLAIM_RUNS = """
WITH g AS (
    SELECT * FROM unnest(%(run_id)s::varchar[], %(attempt_id)s::varchar[],
                         %(host_id)s::varchar[], %(number)s::int[], %(seq)s::int[],
                         %(at)s::float8[], %(lease)s::varchar[], %(expires)s::float8[],
                         %(actor)s::varchar[], %(details)s::text[])
        AS g(run_id, attempt_id, host_id, number, seq, at, lease, expires, actor, details)
), claimed AS (
    UPDATE runs SET status = 'claimed', attempt_id = g.attempt_id, host_id = g.host_id,
        attempt = g.number, event_seq = g.seq, updated_at = g.at, stop_intent = NULL,
        stop_requested_at = NULL, stop_deadline = NULL, stalled = false,
        termination_reason = NULL, exit_code = NULL, ended_at = NULL
    FROM g
    WHERE runs.id = g.run_id AND runs.event_seq = g.seq - 1
        AND runs.id = ANY(%(run_id)s::varchar[])
    RETURNING runs.id
), new_attempts AS (
    INSERT INTO attempts (id, run_id, number, host_id, lease, lease_expires_at, active,
                          claimed_at)
    SELECT g.attempt_id, g.run_id, g.number, g.host_id, g.lease, g.expires, true, g.at
    FROM g JOIN claimed ON claimed.id = g.run_id
), new_events AS (
    INSERT INTO events (run_id, seq, attempt, at, kind, status, actor, details)
    SELECT g.run_id, g.seq, g.number, g.at, 'status', 'claimed', g.actor, g.details::json
    FROM g JOIN claimed ON claimed.id = g.run_id
)
SELECT count(*) FROM claimed
"""


class PostgresTransaction(SQLTransaction):
    lock_clause = {"read": False}
    skip_locked_clause = {"skip_locked": True}

    def claim_runs(self, grants: Sequence[base.Grant]) -> None:
        if not grants:
            return
        g = grants
        cur = execute_raw(self.conn, _CLAIM_RUNS, {
            "run_id": [x.run_id for x in g], "attempt_id": [x.attempt_id for x in g],
            "host_id": [x.host_id for x in g], "number": [x.number for x in g],
            "seq": [x.seq for x in g], "at": [x.at for x in g], "lease": [x.lease for x in g],
            "expires": [x.lease_expires_at for x in g], "actor": [x.actor for x in g],
            "details": [json.dumps({"worker": x.host_id}) for x in g]})
        try:
            changed = int(cur.fetchone()[0])
        finally:
            cur.close()
        if changed != len(g):  # the rows were read locked: a bug if so
            raise errors.Conflict(f"{len(g) - changed} of {len(g)} runs changed while being "
                                  "claimed")

    def _upsert(self, table: sa.Table, row: Mapping[str, Any], keys: list[str],
                update: list[str]) -> None:
        stmt = insert(table).values(**row)
        stmt = stmt.on_conflict_do_update(index_elements=keys,
                                          set_={k: stmt.excluded[k] for k in update})
        self.conn.execute(stmt)


class PostgresStore(SQLStore):
    transaction_class = PostgresTransaction
