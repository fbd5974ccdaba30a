"""The SQLAlchemy Core implementation of :mod:`runyard.store.base`, shared by both databases.

What differs between them is behind :class:`runyard.store.dialect.Dialect`, implemented in
:mod:`runyard.store.sqlite` and :mod:`runyard.store.postgres`; the claim's SQL is in
:mod:`runyard.store.claims`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import resources
from typing import Any

import sqlalchemy as sa

from runyard import errors
from runyard.store import base, blobs, claims, keyset, notifications, rulestore, runlist
from runyard.store.access import Access, first, rows
from runyard.store.blobs import BlobsMixin
from runyard.store.catalog import CatalogMixin
from runyard.store.dialect import Dialect
from runyard.store.logs import LogsMixin
from runyard.store.metrics import MetricsMixin
from runyard.store.notifications import NotificationsMixin
from runyard.store.prepared import Prepared, fetch_many
from runyard.store.progress_history import ProgressMixin
from runyard.store.rulestore import RulesMixin
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
    tokens,
    workers,
)

# Read on every request that names a run or an attempt, and written by every status change:
# Prepared (runyard.store.prepared) keeps SQLAlchemy's per-call bookkeeping out of SQLite's
# write lock, which every process on the file waits for.
_RUN_BY_ID = Prepared(sa.select(runs).where(runs.c.id == sa.bindparam("id")))
_ATTEMPT_BY_ID = Prepared(sa.select(attempts).where(attempts.c.id == sa.bindparam("id")))
_ATTEMPT_BY_TOKEN = Prepared(
    sa.select(attempts.c.id, attempts.c.run_id, attempts.c.number, attempts.c.host_id,
              attempts.c.active)
    .where(attempts.c.token_hash == sa.bindparam("h", type_=sa.String)))


def _insert(conn: sa.Connection, table: sa.Table, row: Mapping[str, Any]) -> None:
    keys = tuple(row)
    Prepared.cached(("insert", table.name, keys),
                    lambda: Prepared(table.insert(), column_keys=keys)).run(conn, **row)




def alembic_config() -> Any:
    """Alembic's configuration of Runyard's migrations (runyard/store/migrations)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("runyard.store") / "migrations"))
    return cfg


def head_revision() -> str | None:
    """The newest schema revision this Runyard's migrations know."""
    from alembic.script import ScriptDirectory

    head: str | None = ScriptDirectory.from_config(alembic_config()).get_current_head()
    return head

class SQLTransaction(base.Transaction):
    """Primitives over one open connection; the transaction is the connection's.

    Reads that lock rows say so with ``with_for_update``: PostgreSQL locks, SQLite (whose
    ``BEGIN IMMEDIATE`` keeps every other writer out) renders nothing.
    """

    def __init__(self, conn: sa.Connection, ops: Dialect) -> None:
        self.conn = conn
        self.ops = ops

    # runs
    def lock_run(self, run_id: str) -> base.Row | None:
        stmt = sa.select(runs).where(runs.c.id == run_id).with_for_update()
        return first(self.conn.execute(stmt))

    def insert_run(self, row: Mapping[str, Any]) -> None:
        if row.get("status_updated_at") is None:
            row = {**row, "status_updated_at": row.get("updated_at", row.get("created_at"))}
        self.conn.execute(runs.insert().values(**row))

    def update_run(self, run_id: str, values: Mapping[str, Any],
                   expect_status: Sequence[str] | None = None) -> bool:
        if "status" in values and "status_updated_at" not in values:
            # Only a status that changes moves it (a write may restate the same status).
            at = values.get("updated_at")
            values = {**values, "status_updated_at": sa.case(
                (runs.c.status == values["status"], runs.c.status_updated_at),
                else_=time.time() if at is None else at)}
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
        changed = self.ops.claim_runs(self.conn, grants)
        if changed != len(grants):  # the claim read them under lock: a bug if so
            raise errors.Conflict(f"{len(grants) - changed} of {len(grants)} runs changed "
                                  "while being claimed")

    def insert_event(self, row: Mapping[str, Any]) -> None:
        _insert(self.conn, events, row)

    # attempts
    def lock_attempt(self, attempt_id: str) -> base.Row | None:
        stmt = sa.select(attempts).where(attempts.c.id == attempt_id).with_for_update()
        return first(self.conn.execute(stmt))

    def insert_attempt(self, row: Mapping[str, Any]) -> None:
        _insert(self.conn, attempts, row)

    def update_attempt(self, attempt_id: str, values: Mapping[str, Any]) -> None:
        self.conn.execute(attempts.update().where(attempts.c.id == attempt_id).values(**values))

    # claiming
    def claim_candidates(self, worker: base.WorkerFilter, after: tuple[int, float, str] | None,
                         limit: int) -> list[base.Row]:
        stmt, params = claims.candidates_query(worker, after, limit)
        return stmt.all(self.conn, **params)

    def claim_candidates_many(self, pages: Sequence[tuple[base.WorkerFilter, int]]
                              ) -> list[list[base.Row]]:
        return fetch_many(self.conn, [claims.candidates_query(wf, None, n)
                                     for wf, n in pages])

    def worker_states(self, host_ids: Sequence[str]) -> dict[str, base.Row]:
        return claims.by_host(fetch_many(self.conn, claims.workers_queries(host_ids)))

    def claim_view(self, host_ids: Sequence[str], seen_after: float
                   ) -> tuple[dict[str, base.Row], dict[str, int]]:
        *states, free = fetch_many(self.conn, [*claims.workers_queries(host_ids),
                                               (claims.CUDA_FREE, {"seen_after": seen_after})])
        return claims.by_host(states), {r["host_id"]: int(r["free"]) for r in free}

    def expired_attempts(self, now: float, limit: int) -> list[base.Row]:
        stmt = (sa.select(attempts)
                .where(ACTIVE_ONLY, attempts.c.lease_expires_at < now)
                .order_by(attempts.c.lease_expires_at).limit(limit))
        return rows(self.conn.execute(stmt.with_for_update(skip_locked=True)))

    def extend_leases(self, until: float) -> int:
        stmt = (attempts.update().where(ACTIVE_ONLY, attempts.c.lease_expires_at < until)
                .values(lease_expires_at=until))
        return int(self.conn.execute(stmt).rowcount)

    def stalled_candidates(self, now: float, limit: int) -> list[base.Row]:
        c = runs.c
        stmt = (sa.select(c.id, c.last_step_at, c.stall_after_s, c.attempt)
                .where(c.status == "running", c.stalled == sa.false(),
                       c.last_step_at.is_not(None),
                       c.last_step_at + c.stall_after_s < now)
                .limit(limit))
        return rows(self.conn.execute(stmt))

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

    def refresh_worker(self, host_id: str, token_name: str, values: Mapping[str, Any]) -> bool:
        stmt = (workers.update()
                .where(workers.c.host_id == host_id, workers.c.token_name == token_name)
                .values(**values))
        return bool(self.conn.execute(stmt).rowcount)

    def count_workers(self, *, token_name: str | None = None, besides: str | None = None
                      ) -> int:
        stmt = sa.select(sa.func.count()).select_from(workers)
        if token_name is not None:
            stmt = stmt.where(workers.c.token_name == token_name)
        if besides is not None:
            stmt = stmt.where(workers.c.host_id != besides)
        return int(self.conn.execute(stmt).scalar_one())

    def lock_token(self, name: str) -> base.Row | None:
        stmt = (sa.select(tokens.c.name, tokens.c.role, tokens.c.hosts, tokens.c.max_hosts)
                .where(tokens.c.name == name, tokens.c.revoked_at.is_(None))
                .with_for_update())
        return first(self.conn.execute(stmt))

    def bind_token(self, name: str, hosts: str) -> bool:
        stmt = (tokens.update()
                .where(tokens.c.name == name, tokens.c.hosts.is_(None),
                       tokens.c.revoked_at.is_(None))
                .values(hosts=hosts))
        return bool(self.conn.execute(stmt).rowcount)

    def delete_idle_workers(self, *, host_id: str | None = None,
                            seen_before: float | None = None) -> list[str]:
        idle = [workers.c.active_attempts == 0]
        if host_id is not None:
            idle.append(workers.c.host_id == host_id)
        if seen_before is not None:
            idle.append(workers.c.last_seen_at < seen_before)
        # Locked first: a claim's trigger must wait to count an attempt on a row, so the rows
        # found stay idle until they are deleted.
        ids = [r[0] for r in self.conn.execute(
            sa.select(workers.c.host_id).where(*idle).with_for_update())]
        if ids:
            self.conn.execute(workers.delete().where(workers.c.host_id.in_(ids)))
        return ids

    def active_attempts_on(self, host_id: str) -> list[base.Row]:
        stmt = (sa.select(attempts.c.id, attempts.c.run_id, attempts.c.number)
                .where(ACTIVE_ONLY, attempts.c.host_id == host_id)
                .order_by(attempts.c.run_id))
        return rows(self.conn.execute(stmt))

    def upsert_host_policy(self, row: Mapping[str, Any]) -> None:
        self._upsert(host_policies, row, ["host_id"], [k for k in row if k != "host_id"])

    def _upsert(self, table: sa.Table, values: Mapping[str, Any], keys: list[str],
                update: list[str]) -> None:
        stmt = self.ops.insert(table).values(**values)
        stmt = stmt.on_conflict_do_update(index_elements=keys,
                                          set_={k: stmt.excluded[k] for k in update})
        self.conn.execute(stmt)

    # misc
    def insert_progress(self, row: Mapping[str, Any]) -> None:
        self.conn.execute(progress_snapshots.insert().values(**row))

    def get_blueprint(self, name: str) -> base.Row | None:
        return first(self.conn.execute(
            sa.select(blueprints).where(blueprints.c.name == name)))

    def run_by_job_key(self, job_key: str) -> base.Row | None:
        return first(self.conn.execute(sa.select(runs).where(runs.c.job_key == job_key)))

    def run_blob_refs(self, run_id: str) -> list[str]:
        a = sa.select(artifacts.c.sha256).where(artifacts.c.run_id == run_id)
        c = sa.select(checkpoints.c.sha256).where(checkpoints.c.run_id == run_id,
                                                  checkpoints.c.sha256.is_not(None))
        return sorted({r[0] for r in self.conn.execute(sa.union(a, c))})

    def unreferenced_blobs(self, candidates: Sequence[str]) -> list[str]:
        return blobs.unreferenced(self.conn, candidates)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        with self.conn.begin_nested():
            yield

    # rules
    def rule_states(self, run_id: str) -> dict[str, base.Row]:
        return rulestore.lock_states(self.conn, run_id)

    def put_rule_states(self, run_id: str, states: Mapping[str, Mapping[str, Any]]) -> None:
        rulestore.put_states(self.conn, self.ops, run_id, states)

    def count_rule_hits(self, run_id: str, n: int) -> None:
        rulestore.count_hits(self.conn, run_id, n)


    def add_notification(self, *, channel: str, run_id: str | None, kind: str, details: Any,
                         at: float) -> int:
        return notifications.add_notification(self.conn, channel=channel, run_id=run_id,
                                              kind=kind, details=details, at=at)


class SQLStore(MetricsMixin, ProgressMixin, LogsMixin, BlobsMixin, CatalogMixin, RulesMixin,
               NotificationsMixin, Access,
               base.Store):
    """A store over a SQLAlchemy engine, writing ``ops``'s SQL."""

    def __init__(self, engine: sa.Engine, ops: Dialect) -> None:
        self.engine = engine
        self.ops = ops
        self.url = engine.url.render_as_string(hide_password=True)
        self.dialect = engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[base.Transaction]:
        with self._write() as conn:
            yield SQLTransaction(conn, self.ops)

    def _transaction(self, conn: sa.Connection) -> base.Transaction:
        return SQLTransaction(conn, self.ops)

    # migrations
    def _alembic(self, conn: sa.Connection) -> Any:
        cfg = alembic_config()
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
                  sort: str | Sequence[str] = "-created_at",
                  fields: Sequence[str] | None = None,
                  after: Sequence[Any] | None = None) -> list[base.Row]:
        keys = runlist.parse_sort(sort)
        cols = [runs.c[f] for f in fields] if fields else list(runs.c)
        if fields:
            cols += [runs.c[k.column] for k in keys if k.column not in fields]
        stmt = sa.select(*cols).where(*runlist.filter_clauses(filt, self.ops.contains))
        with self._read() as conn:
            if after is None and after_id is not None:
                pivot = conn.execute(sa.select(*(runs.c[k.column] for k in keys))
                                     .where(runs.c.id == after_id)).first()
                if pivot is None:
                    raise errors.ValidationError(f"after_id: no run {after_id!r}",
                                                 field="after_id")
                after = tuple(pivot)
            if after is not None:
                stmt = stmt.where(keyset.after(runs, keys, keyset.Position(tuple(after))))
            stmt = stmt.order_by(*keyset.order_by(runs, keys))
            return rows(conn.execute(stmt.limit(limit)))

    def count_runs_by_status(self) -> dict[str, int]:
        with self._read() as conn:
            counts = conn.execute(sa.select(runs.c.status, sa.func.count())
                                  .group_by(runs.c.status))
            return {s: int(n) for s, n in counts}

    def get_attempt(self, attempt_id: str) -> base.Row | None:
        with self._read() as conn:
            return _ATTEMPT_BY_ID.first(conn, id=attempt_id)

    def attempt_by_token_hash(self, token_hash: str) -> base.Row | None:
        with self._read() as conn:
            return _ATTEMPT_BY_TOKEN.first(conn, h=token_hash)

    def get_attempt_and_run(self, attempt_id: str) -> tuple[base.Row, base.Row | None] | None:
        with self._read() as conn:
            att = _ATTEMPT_BY_ID.first(conn, id=attempt_id)
            if att is None:
                return None
            return att, _RUN_BY_ID.first(conn, id=att["run_id"])

    def active_attempts_of(self, host_id: str) -> list[base.Row]:
        a = attempts.c
        stmt = (sa.select(a.id, a.run_id, a.number, a.external_id, a.nodes)
                .where(ACTIVE_ONLY, a.host_id == host_id).order_by(a.run_id))
        with self._read() as conn:
            return rows(conn.execute(stmt))

    def list_attempts(self, run_id: str) -> list[base.Row]:
        with self._read() as conn:
            stmt = sa.select(attempts).where(attempts.c.run_id == run_id).order_by(
                attempts.c.number)
            return rows(conn.execute(stmt))

    def list_events(self, run_id: str, *, after_seq: int = 0, limit: int = 100,
                    order: str = "asc") -> list[base.Row]:
        if order not in ("asc", "desc"):
            raise errors.ValidationError("order: expected 'asc' or 'desc'", field="order")
        stmt = sa.select(events).where(events.c.run_id == run_id, events.c.seq > after_seq)
        stmt = stmt.order_by(events.c.seq.asc() if order == "asc" else events.c.seq.desc())
        with self._read() as conn:
            return rows(conn.execute(stmt.limit(limit)))

    def events_since(self, after_id: int, limit: int = 500) -> list[base.Row]:
        stmt = (sa.select(events).where(events.c.id > after_id).order_by(events.c.id)
                .limit(limit))
        with self._read() as conn:
            return rows(conn.execute(stmt))

    def list_workers(self) -> list[base.Row]:
        with self._read() as conn:
            stmt = claims.workers_stmt().order_by(workers.c.host_id)
            return rows(conn.execute(stmt))

    def get_worker(self, host_id: str) -> base.Row | None:
        with self._read() as conn:
            return first(conn.execute(
                claims.workers_stmt().where(workers.c.host_id == host_id)))

    def list_host_policies(self) -> list[base.Row]:
        with self._read() as conn:
            stmt = sa.select(host_policies).order_by(host_policies.c.host_id)
            return rows(conn.execute(stmt))

    def queued_runs(self, limit: int = 1000) -> list[base.Row]:
        c = runs.c
        stmt = (sa.select(runs).where(QUEUED_ONLY)
                .order_by(c.priority.desc(), c.created_at, c.id).limit(limit))
        with self._read() as conn:
            return rows(conn.execute(stmt))

    def iter_progress(self, run_id: str, limit: int = 20) -> Iterator[base.Row]:
        stmt = (sa.select(progress_snapshots).where(progress_snapshots.c.run_id == run_id)
                .order_by(progress_snapshots.c.id.desc()).limit(limit))
        with self._read() as conn:
            snapshots = rows(conn.execute(stmt))
        return iter(snapshots)


__all__ = ["SQLStore", "SQLTransaction"]
