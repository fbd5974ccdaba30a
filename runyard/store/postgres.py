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

# A batch of claims as three statements over arrays (one element per claim): psycopg's
# executemany costs about a round trip per row, several times one statement over arrays.
# The `= ANY` repeats the join on ids so that the planner reads the runs by primary key.
# The run must still be as the claim read it: its event_seq moves with every status change
# (each appends an event), so no status test is needed, and one on `status` would lead the
# planner to scan every queued run in the status index.
_CLAIM_RUNS = """
UPDATE runs SET status = 'claimed', attempt_id = g.attempt_id, host_id = g.host_id,
    attempt = g.number, event_seq = g.seq, updated_at = g.at, stop_intent = NULL,
    stop_requested_at = NULL, stop_deadline = NULL, stalled = false,
    termination_reason = NULL, exit_code = NULL, ended_at = NULL
FROM unnest(%s::varchar[], %s::varchar[], %s::varchar[], %s::int[], %s::int[],
            %s::float8[]) AS g(run_id, attempt_id, host_id, number, seq, at)
WHERE runs.id = g.run_id AND runs.event_seq = g.seq - 1 AND runs.id = ANY(%s::varchar[])
"""
_INSERT_ATTEMPTS = """
INSERT INTO attempts (id, run_id, number, host_id, lease, lease_expires_at, active, claimed_at)
SELECT id, run_id, number, host_id, lease, expires, true, at
FROM unnest(%s::varchar[], %s::varchar[], %s::int[], %s::varchar[], %s::varchar[],
            %s::float8[], %s::float8[]) AS g(id, run_id, number, host_id, lease, expires, at)
"""
_INSERT_EVENTS = """
INSERT INTO events (run_id, seq, attempt, at, kind, status, actor, details)
SELECT run_id, seq, number, at, 'status', 'claimed', actor, details::json
FROM unnest(%s::varchar[], %s::int[], %s::int[], %s::float8[], %s::varchar[], %s::text[])
    AS g(run_id, seq, number, at, actor, details)
"""


class PostgresTransaction(SQLTransaction):
    lock_clause = {"read": False}
    skip_locked_clause = {"skip_locked": True}

    def claim_runs(self, grants: Sequence[base.Grant]) -> None:
        if not grants:
            return
        g = grants
        ids = [x.run_id for x in g]
        cur = execute_raw(self.conn, _CLAIM_RUNS, (
            ids, [x.attempt_id for x in g], [x.host_id for x in g], [x.number for x in g],
            [x.seq for x in g], [x.at for x in g], ids))
        changed = cur.rowcount
        cur.close()
        if changed != len(g):  # the rows were read locked: a bug if so
            raise errors.Conflict(f"{len(g) - changed} of {len(g)} runs changed while being "
                                  "claimed")
        execute_raw(self.conn, _INSERT_ATTEMPTS, (
            [x.attempt_id for x in g], [x.run_id for x in g], [x.number for x in g],
            [x.host_id for x in g], [x.lease for x in g], [x.lease_expires_at for x in g],
            [x.at for x in g])).close()
        execute_raw(self.conn, _INSERT_EVENTS, (
            [x.run_id for x in g], [x.seq for x in g], [x.number for x in g],
            [x.at for x in g], [x.actor for x in g],
            [json.dumps({"worker": x.host_id}) for x in g])).close()

    def _upsert(self, table: sa.Table, row: Mapping[str, Any], keys: list[str],
                update: list[str]) -> None:
        stmt = insert(table).values(**row)
        stmt = stmt.on_conflict_do_update(index_elements=keys,
                                          set_={k: stmt.excluded[k] for k in update})
        self.conn.execute(stmt)


class PostgresStore(SQLStore):
    transaction_class = PostgresTransaction
