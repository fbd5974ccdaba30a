"""The SQLAlchemy Core implementation of :mod:`runyard.store.base`, shared by both dialects.

Dialect differences (row locks, ``SKIP LOCKED``, upserts) are the hooks that
:mod:`runyard.store.sqlite` and :mod:`runyard.store.postgres` override.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import resources
from typing import Any

import sqlalchemy as sa

from runyard import errors
from runyard.eligibility import SQL_LABEL_KEYS
from runyard.store import base, data, metrics, schema
from runyard.store.prepared import Prepared, fetch_many
from runyard.store.schema import (
    ACTIVE_ONLY,
    QUEUED_ONLY,
    artifacts,
    attempts,
    blueprints,
    checkpoints,
    events,
    host_policies,
    progress_snapshots,
    runs,
    workers,
)

log = logging.getLogger(__name__)

#: Columns a listing may sort on (a leading '-' means descending).
SORTABLE = frozenset({"created_at", "updated_at", "priority", "name", "status", "ended_at"})


def _row(r: sa.Row[Any] | None) -> base.Row | None:
    return None if r is None else dict(r._mapping)


def _insert(conn: sa.Connection, table: sa.Table, row: Mapping[str, Any]) -> None:
    keys = tuple(row)
    Prepared.cached(("insert", table.name, keys),
                    lambda: Prepared(table.insert(), column_keys=keys)).run(conn, **row)


def workers_stmt() -> sa.Select[Any]:
    """Workers with their host policy (and their count of active attempts, a column)."""
    return (sa.select(workers, host_policies.c.allow, host_policies.c.deny,
                      host_policies.c.slots.label("policy_slots"),
                      host_policies.c.labels.label("policy_labels"))
            .select_from(workers.outerjoin(host_policies,
                                           host_policies.c.host_id == workers.c.host_id)))


# Constraints come as their JSON text: runs share a few distinct ones, so the claim decodes
# and judges each distinct text once, not every candidate row.
# `attempt` and `event_seq` are what the claim's conditional write expects to find.
_CANDIDATE_COLS = (runs.c.id, runs.c.name, runs.c.blueprint, runs.c.priority,
                   runs.c.created_at, sa.cast(runs.c.constraints, sa.Text).label("constraints"),
                   runs.c.prefer_cuda, runs.c.require_cuda, runs.c.gpus, runs.c.attempt,
                   runs.c.event_seq)


_LABEL_BINDS = tuple(f"w_labels_{i}" for i in range(SQL_LABEL_KEYS))


def _candidates_stmt(cpu_only: bool, skip_prefer_cuda: bool, keyset: bool,
                     by_labels: bool) -> sa.Select[Any]:
    """Queued runs a worker's resources can serve, best first; one statement per variant."""
    c = runs.c
    stmt = sa.select(*_CANDIDATE_COLS).where(
        QUEUED_ONLY,
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
            [sa.bindparam(name, type_=sa.Text) for name in _LABEL_BINDS]))
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


def _workers_in(count: int) -> Prepared:
    """Worker rows of ``count`` hosts (binds ``h0``...): one statement per power of two, the
    unused binds repeating a host."""
    return Prepared.cached(("workers_in", count), lambda: Prepared(workers_stmt().where(
        workers.c.host_id.in_([sa.bindparam(f"h{i}", type_=sa.String) for i in range(count)]))))


def _workers_queries(host_ids: Sequence[str]) -> list[tuple[Prepared, dict[str, Any]]]:
    """The queries (and their binds) that read these workers' rows, 64 hosts at most each."""
    ids = list(dict.fromkeys(host_ids))
    out = []
    for start in range(0, len(ids), 64):
        part = ids[start:start + 64]
        size = 1 << (len(part) - 1).bit_length()
        out.append((_workers_in(size),
                    {f"h{i}": part[min(i, len(part) - 1)] for i in range(size)}))
    return out


def _by_host(results: Sequence[list[base.Row]]) -> dict[str, base.Row]:
    return {row["host_id"]: row for rows in results for row in rows}


def _candidates_query(worker: base.WorkerFilter, after: tuple[int, float, str] | None,
                      limit: int) -> tuple[Prepared, dict[str, Any]]:
    """The candidates query of this worker's variant, and its binds."""
    variant = (not worker.has_cuda, worker.skip_prefer_cuda, after is not None,
               worker.labels_keys is not None)
    params: dict[str, Any] = {"w_gpus": worker.gpus, "w_vram": worker.max_vram_gib,
                              "w_ram": worker.ram_gib, "w_cpus": worker.cpus, "limit": limit}
    if worker.labels_keys is not None:
        params.update(zip(_LABEL_BINDS, worker.labels_keys, strict=True))
    if after is not None:
        params.update(a_prio=after[0], a_created=after[1], a_id=after[2])
    stmt = Prepared.cached(("claim_candidates", *variant),
                           lambda: Prepared(_candidates_stmt(*variant)))
    return stmt, params


# Read on every request that names a run or an attempt.
_RUN_BY_ID = Prepared(sa.select(runs).where(runs.c.id == sa.bindparam("id")))
_ATTEMPT_BY_ID = Prepared(sa.select(attempts).where(attempts.c.id == sa.bindparam("id")))


def _cuda_free_stmt() -> sa.Select[Any]:
    active = workers.c.active_attempts
    slots = sa.func.coalesce(host_policies.c.slots, workers.c.slots)
    return (sa.select(workers.c.host_id, (slots - active).label("free"))
            .select_from(workers.outerjoin(host_policies,
                                           host_policies.c.host_id == workers.c.host_id))
            .where(workers.c.has_cuda == sa.true(), workers.c.drained == sa.false(),
                   workers.c.last_seen_at >= sa.bindparam("seen_after", type_=sa.Float),
                   active < slots))


_CUDA_FREE = Prepared(_cuda_free_stmt())

# The claim's writes, each run once per batch with one row of values per claimed run.
_CLAIM_RUNS = Prepared(
    runs.update()
    .where(runs.c.id == sa.bindparam("g_run_id", type_=sa.String),
           runs.c.status == "queued",
           runs.c.event_seq == sa.bindparam("g_prev_seq", type_=sa.Integer))
    .values(status="claimed", attempt_id=sa.bindparam("g_attempt_id", type_=sa.String),
            host_id=sa.bindparam("g_host_id", type_=sa.String),
            attempt=sa.bindparam("g_number", type_=sa.Integer),
            event_seq=sa.bindparam("g_seq", type_=sa.Integer),
            updated_at=sa.bindparam("g_at", type_=runs.c.updated_at.type),
            stop_intent=None, stop_requested_at=None, stop_deadline=None, stalled=False,
            termination_reason=None, exit_code=None, ended_at=None))
_ATTEMPT_KEYS = ("id", "run_id", "number", "host_id", "lease", "lease_expires_at", "active",
                 "claimed_at")
_INSERT_ATTEMPTS = Prepared(attempts.insert(), column_keys=_ATTEMPT_KEYS)
_EVENT_KEYS = ("run_id", "seq", "attempt", "at", "kind", "status", "actor", "details")
_INSERT_EVENTS = Prepared(events.insert(), column_keys=_EVENT_KEYS)


class SQLTransaction(base.Transaction):
    """Primitives over one open connection; the transaction is the connection's."""

    #: Appended to SELECTs that must lock rows; SQLite needs none (BEGIN IMMEDIATE).
    lock_clause: dict[str, Any] = {}
    skip_locked_clause: dict[str, Any] = {}

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    def _locked(self, stmt: sa.Select[Any], skip: bool = False) -> sa.Select[Any]:
        opts = self.skip_locked_clause if skip else self.lock_clause
        return stmt.with_for_update(**opts) if opts else stmt

    # runs
    def lock_run(self, run_id: str) -> base.Row | None:
        stmt = self._locked(sa.select(runs).where(runs.c.id == run_id))
        return _row(self.conn.execute(stmt).first())

    def insert_run(self, row: Mapping[str, Any]) -> None:
        self.conn.execute(runs.insert().values(**row))

    def update_run(self, run_id: str, values: Mapping[str, Any],
                   expect_status: Sequence[str] | None = None) -> bool:
        stmt = runs.update().where(runs.c.id == run_id).values(**values)
        if expect_status is not None:
            stmt = stmt.where(runs.c.status.in_(list(expect_status)))
        return bool(self.conn.execute(stmt).rowcount)

    def delete_run(self, run_id: str) -> None:
        self.conn.execute(runs.delete().where(runs.c.id == run_id))

    def append_event(self, run_id: str, *, kind: str, status: str, actor: str, attempt: int,
                     at: float, details: Mapping[str, Any] | None) -> int:
        seq = self.conn.execute(
            runs.update().where(runs.c.id == run_id)
            .values(event_seq=runs.c.event_seq + 1).returning(runs.c.event_seq)
        ).scalar_one()
        self.conn.execute(events.insert().values(
            run_id=run_id, seq=seq, kind=kind, status=status, actor=actor, attempt=attempt,
            at=at, details=dict(details) if details else None,
        ))
        return int(seq)

    def claim_runs(self, grants: Sequence[base.Grant]) -> None:
        if not grants:
            return
        changed = _CLAIM_RUNS.run_many(self.conn, [
            {"g_run_id": g.run_id, "g_prev_seq": g.seq - 1, "g_attempt_id": g.attempt_id,
             "g_host_id": g.host_id, "g_number": g.number, "g_seq": g.seq, "g_at": g.at}
            for g in grants])
        if changed != len(grants):  # the claim read it under the write lock: a bug if so
            raise errors.Conflict(f"{len(grants) - changed} of {len(grants)} runs changed "
                                  "while being claimed")
        _INSERT_ATTEMPTS.run_many(self.conn, [
            {"id": g.attempt_id, "run_id": g.run_id, "number": g.number, "host_id": g.host_id,
             "lease": g.lease, "lease_expires_at": g.lease_expires_at, "active": True,
             "claimed_at": g.at} for g in grants])
        _INSERT_EVENTS.run_many(self.conn, [
            {"run_id": g.run_id, "seq": g.seq, "attempt": g.number, "at": g.at,
             "kind": "status", "status": "claimed", "actor": g.actor,
             "details": {"worker": g.host_id}} for g in grants])

    def insert_event(self, row: Mapping[str, Any]) -> None:
        _insert(self.conn, events, row)

    # attempts
    def lock_attempt(self, attempt_id: str) -> base.Row | None:
        stmt = self._locked(sa.select(attempts).where(attempts.c.id == attempt_id))
        return _row(self.conn.execute(stmt).first())

    def insert_attempt(self, row: Mapping[str, Any]) -> None:
        _insert(self.conn, attempts, row)

    def update_attempt(self, attempt_id: str, values: Mapping[str, Any]) -> None:
        self.conn.execute(attempts.update().where(attempts.c.id == attempt_id).values(**values))

    # claiming
    def claim_candidates(self, worker: base.WorkerFilter, after: tuple[int, float, str] | None,
                         limit: int) -> list[base.Row]:
        stmt, params = _candidates_query(worker, after, limit)
        return stmt.all(self.conn, **params)

    def claim_candidates_many(self, pages: Sequence[tuple[base.WorkerFilter, int]]
                              ) -> list[list[base.Row]]:
        return fetch_many(self.conn, [_candidates_query(wf, None, n) for wf, n in pages])

    def worker_states(self, host_ids: Sequence[str]) -> dict[str, base.Row]:
        return _by_host(fetch_many(self.conn, _workers_queries(host_ids)))

    def claim_view(self, host_ids: Sequence[str], seen_after: float
                   ) -> tuple[dict[str, base.Row], dict[str, int]]:
        *states, free = fetch_many(self.conn, [*_workers_queries(host_ids),
                                               (_CUDA_FREE, {"seen_after": seen_after})])
        return _by_host(states), {r["host_id"]: int(r["free"]) for r in free}

    def expired_attempts(self, now: float, limit: int) -> list[base.Row]:
        stmt = (sa.select(attempts)
                .where(ACTIVE_ONLY, attempts.c.lease_expires_at < now)
                .order_by(attempts.c.lease_expires_at).limit(limit))
        return [dict(r._mapping) for r in self.conn.execute(self._locked(stmt, skip=True))]

    def stalled_candidates(self, now: float, limit: int) -> list[base.Row]:
        c = runs.c
        stmt = (sa.select(c.id, c.last_step_at, c.stall_after_s, c.attempt)
                .where(c.status == "running", c.stalled == sa.false(),
                       c.last_step_at.is_not(None),
                       c.last_step_at + c.stall_after_s < now)
                .limit(limit))
        return [dict(r._mapping) for r in self.conn.execute(stmt)]

    # workers and policies
    def upsert_worker(self, row: Mapping[str, Any]) -> None:
        keep = {"registered_at", "drained", "host_id"}
        changes = {k: v for k, v in row.items() if k not in keep}
        if self.update_worker(row["host_id"], changes):  # a known worker (every claim call)
            return
        # A new worker row starts from the host's active attempts (a local run may be
        # running there already); from then on the triggers keep the count.
        count = (sa.select(sa.func.count()).select_from(attempts)
                 .where(attempts.c.host_id == row["host_id"], ACTIVE_ONLY)
                 .scalar_subquery())
        self._upsert(workers, {**row, "active_attempts": count}, ["host_id"], list(changes))

    def update_worker(self, host_id: str, values: Mapping[str, Any]) -> bool:
        stmt = workers.update().where(workers.c.host_id == host_id).values(**values)
        return bool(self.conn.execute(stmt).rowcount)

    def upsert_host_policy(self, row: Mapping[str, Any]) -> None:
        self._upsert(host_policies, row, ["host_id"], [k for k in row if k != "host_id"])

    def _upsert(self, table: sa.Table, row: Mapping[str, Any], keys: list[str],
                update: list[str]) -> None:
        raise NotImplementedError

    # misc
    def insert_progress(self, row: Mapping[str, Any]) -> None:
        self.conn.execute(progress_snapshots.insert().values(**row))

    def get_blueprint(self, name: str) -> base.Row | None:
        return _row(self.conn.execute(
            sa.select(blueprints).where(blueprints.c.name == name)).first())

    def run_by_job_key(self, job_key: str) -> base.Row | None:
        return _row(self.conn.execute(sa.select(runs).where(runs.c.job_key == job_key)).first())

    def run_blob_refs(self, run_id: str) -> list[str]:
        a = sa.select(artifacts.c.sha256).where(artifacts.c.run_id == run_id)
        c = sa.select(checkpoints.c.sha256).where(checkpoints.c.run_id == run_id,
                                                  checkpoints.c.sha256.is_not(None))
        return sorted({r[0] for r in self.conn.execute(sa.union(a, c))})

    def unreferenced_blobs(self, candidates: Sequence[str]) -> list[str]:
        if not candidates:
            return []
        used_a = sa.select(artifacts.c.sha256).where(artifacts.c.sha256.in_(candidates))
        used_c = sa.select(checkpoints.c.sha256).where(checkpoints.c.sha256.in_(candidates))
        used = {r[0] for r in self.conn.execute(sa.union(used_a, used_c))}
        return sorted(set(candidates) - used)


class SQLStore(metrics.MetricsMixin, data.DataMixin, base.Store):
    """A store over a SQLAlchemy engine."""

    transaction_class: type[SQLTransaction] = SQLTransaction

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.url = engine.url.render_as_string(hide_password=True)
        self.dialect = engine.dialect.name

    # transactions
    @contextmanager
    def transaction(self) -> Iterator[base.Transaction]:
        with self._write() as conn:
            yield self.transaction_class(conn)

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        try:
            with self.engine.connect().execution_options(readonly=True) as conn:
                yield conn
        except sa.exc.OperationalError as exc:
            raise errors.StoreError(f"database error: {exc.orig}") from exc

    # migrations
    def _alembic(self, conn: sa.Connection) -> Any:
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location",
                            str(resources.files("runyard.store") / "migrations"))
        cfg.attributes["connection"] = conn
        return cfg

    def upgrade(self, revision: str = "head") -> None:
        from alembic import command

        with self.engine.begin() as conn:
            command.upgrade(self._alembic(conn), revision)

    def downgrade(self, revision: str) -> None:
        from alembic import command

        with self.engine.begin() as conn:
            command.downgrade(self._alembic(conn), revision)

    def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def ping(self) -> bool:
        try:
            with self._read() as conn:
                conn.exec_driver_sql("SELECT 1")
            return True
        except (errors.StoreError, sa.exc.DBAPIError):
            return False

    def close(self) -> None:
        self.engine.dispose()

    # reads
    def get_run(self, run_id: str) -> base.Row | None:
        with self._read() as conn:
            return _RUN_BY_ID.first(conn, id=run_id)

    def list_runs(self, filt: base.RunFilter, *, after_id: str | None = None, limit: int = 50,
                  sort: str = "-created_at", fields: Sequence[str] | None = None
                  ) -> list[base.Row]:
        key = sort.lstrip("-")
        if key not in SORTABLE:
            raise errors.ValidationError(
                f"sort: cannot sort by {key!r} (one of: {', '.join(sorted(SORTABLE))})",
                field="sort")
        desc = sort.startswith("-")
        cols = [runs.c[f] for f in fields] if fields else list(runs.c)
        if fields:
            for needed in ("id", key):
                if needed not in fields:
                    cols.append(runs.c[needed])
        c = runs.c
        stmt = sa.select(*cols)
        if filt.status:
            stmt = stmt.where(c.status.in_(filt.status))
        if filt.project:
            stmt = stmt.where(c.project == filt.project)
        if filt.name_like:
            stmt = stmt.where(c.name.ilike(filt.name_like))
        if filt.created_after is not None:
            stmt = stmt.where(c.created_at > filt.created_after)
        if filt.created_before is not None:
            stmt = stmt.where(c.created_at < filt.created_before)
        if filt.host_id:
            stmt = stmt.where(c.host_id == filt.host_id)
        if filt.ids:
            stmt = stmt.where(c.id.in_(filt.ids))
        sort_col = c[key]
        with self._read() as conn:
            if after_id is not None:
                # Keyset pagination: continue strictly after (sort value, id) of after_id.
                pivot = conn.execute(sa.select(sort_col).where(c.id == after_id)).first()
                if pivot is None:
                    raise errors.ValidationError(f"after_id: no run {after_id!r}",
                                                 field="after_id")
                v = pivot[0]
                if not sort_col.nullable:
                    # A row-value comparison: one index range on both dialects (an OR of
                    # the same conditions would make the planner scan).
                    after = (sa.tuple_(sort_col, c.id) < sa.tuple_(v, after_id) if desc
                             else sa.tuple_(sort_col, c.id) > sa.tuple_(v, after_id))
                elif v is None:
                    after = sa.and_(sort_col.is_(None), c.id < after_id if desc
                                    else c.id > after_id)
                elif desc:
                    after = sa.or_(sort_col < v, sa.and_(sort_col == v, c.id < after_id),
                                   sort_col.is_(None))
                else:  # NULLs sort last both ways, so they follow every value
                    after = sa.or_(sort_col > v, sa.and_(sort_col == v, c.id > after_id),
                                   sort_col.is_(None))
                stmt = stmt.where(after)
            if not sort_col.nullable:  # NULLS LAST would keep SQLite from using an index
                stmt = stmt.order_by(sort_col.desc() if desc else sort_col.asc(),
                                     c.id.desc() if desc else c.id.asc())
            elif desc:
                stmt = stmt.order_by(sort_col.desc().nulls_last(), c.id.desc())
            else:
                stmt = stmt.order_by(sort_col.asc().nulls_last(), c.id.asc())
            return [dict(r._mapping) for r in conn.execute(stmt.limit(limit))]

    def count_runs_by_status(self) -> dict[str, int]:
        with self._read() as conn:
            rows = conn.execute(sa.select(runs.c.status, sa.func.count()).group_by(runs.c.status))
            return {s: int(n) for s, n in rows}

    def get_attempt(self, attempt_id: str) -> base.Row | None:
        with self._read() as conn:
            return _ATTEMPT_BY_ID.first(conn, id=attempt_id)

    def get_attempt_and_run(self, attempt_id: str) -> tuple[base.Row, base.Row | None] | None:
        with self._read() as conn:
            att = _ATTEMPT_BY_ID.first(conn, id=attempt_id)
            if att is None:
                return None
            return att, _RUN_BY_ID.first(conn, id=att["run_id"])

    def list_attempts(self, run_id: str) -> list[base.Row]:
        with self._read() as conn:
            stmt = sa.select(attempts).where(attempts.c.run_id == run_id).order_by(
                attempts.c.number)
            return [dict(r._mapping) for r in conn.execute(stmt)]

    def list_events(self, run_id: str, *, after_seq: int = 0, limit: int = 100,
                    order: str = "asc") -> list[base.Row]:
        if order not in ("asc", "desc"):
            raise errors.ValidationError("order: expected 'asc' or 'desc'", field="order")
        stmt = sa.select(events).where(events.c.run_id == run_id, events.c.seq > after_seq)
        stmt = stmt.order_by(events.c.seq.asc() if order == "asc" else events.c.seq.desc())
        with self._read() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt.limit(limit))]

    def events_since(self, after_id: int, limit: int = 500) -> list[base.Row]:
        stmt = (sa.select(events).where(events.c.id > after_id).order_by(events.c.id)
                .limit(limit))
        with self._read() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]

    def list_workers(self) -> list[base.Row]:
        with self._read() as conn:
            stmt = workers_stmt().order_by(workers.c.host_id)
            return [dict(r._mapping) for r in conn.execute(stmt)]

    def get_worker(self, host_id: str) -> base.Row | None:
        with self._read() as conn:
            return _row(conn.execute(
                workers_stmt().where(workers.c.host_id == host_id)).first())

    def list_host_policies(self) -> list[base.Row]:
        with self._read() as conn:
            stmt = sa.select(host_policies).order_by(host_policies.c.host_id)
            return [dict(r._mapping) for r in conn.execute(stmt)]

    def queued_runs(self, limit: int = 1000) -> list[base.Row]:
        c = runs.c
        stmt = (sa.select(runs).where(QUEUED_ONLY)
                .order_by(c.priority.desc(), c.created_at, c.id).limit(limit))
        with self._read() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]

    def iter_progress(self, run_id: str, limit: int = 20) -> Iterator[base.Row]:
        stmt = (sa.select(progress_snapshots).where(progress_snapshots.c.run_id == run_id)
                .order_by(progress_snapshots.c.id.desc()).limit(limit))
        with self._read() as conn:
            rows = [dict(r._mapping) for r in conn.execute(stmt)]
        return iter(rows)


__all__ = ["SQLStore", "SQLTransaction", "schema"]
