"""Channels and the notification outbox in SQL (:class:`NotificationsMixin`, part of
:class:`runyard.store.sql.SQLStore`; :func:`add_notification` also serves
:class:`runyard.store.sql.SQLTransaction`). What the rows mean is
:mod:`runyard.notifications`'s; this module only reads and writes them.

Claiming is safe between server processes on one PostgreSQL database: due rows are read
``FOR UPDATE SKIP LOCKED`` and handed out in the same transaction, with their due time pushed
past the claim's end, so no two deliverers ever hold the same row. SQLite has one writer at a
time (``BEGIN IMMEDIATE``), which gives the same.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from runyard.store.access import Access, first, rows
from runyard.store.base import Row
from runyard.store.schema import PENDING_ONLY, channels, notifications, runs

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
STATUSES = (PENDING, DELIVERED, FAILED)
#: The delivery log's columns (never a claim).
_LOG_COLS = [c for c in notifications.c if c.name != "claim"]


def add_notification(conn: sa.Connection, *, channel: str, run_id: str | None, kind: str,
                     details: Any, at: float) -> int:
    """Insert one delivery with the run as it is now; pending when the channel exists,
    else failed naming the reason. Returns its id."""
    known = conn.execute(sa.select(channels.c.name)
                         .where(channels.c.name == channel)).first() is not None
    run = None
    if run_id is not None:
        r = conn.execute(sa.select(runs.c.id, runs.c.name, runs.c.project, runs.c.status)
                         .where(runs.c.id == run_id)).first()
        run = dict(r._mapping) if r is not None else {"id": run_id}
    values: dict[str, Any] = {
        "channel": channel, "run_id": run_id, "kind": kind,
        "payload": {"run": run, "details": details}, "attempts": 0,
        "created_at": at, "updated_at": at}
    if known:
        values.update(status=PENDING, next_attempt_at=at)
    else:
        values.update(status=FAILED, last_error=f"no channel named {channel!r}")
    stmt = notifications.insert().values(**values).returning(notifications.c.id)
    return int(conn.execute(stmt).scalar_one())


class NotificationsMixin(Access):
    """Channel and outbox methods of the store."""

    # ------------------------------------------------------------------ channels
    def put_channel(self, name: str, kind: str, url: str, secret: str | None,
                    source: str | None) -> tuple[Row, bool]:
        """Create or replace a channel (already checked by the caller). Returns the row and
        whether anything changed."""
        now = time.time()
        c = channels.c
        with self._write() as conn:
            old = first(conn.execute(sa.select(channels).where(c.name == name)))
            values = {"kind": kind, "url": url, "secret": secret, "source": source}
            if old is not None and all(old[k] == v for k, v in values.items()):
                return old, False
            if old is None:
                conn.execute(channels.insert().values(name=name, created_at=now,
                                                      updated_at=now, **values))
            else:
                conn.execute(channels.update().where(c.name == name)
                             .values(updated_at=now, **values))
            row = first(conn.execute(sa.select(channels).where(c.name == name)))
        assert row is not None
        return row, True

    def get_channel(self, name: str) -> Row | None:
        with self._read() as conn:
            return first(conn.execute(sa.select(channels).where(channels.c.name == name)))

    def list_channels(self) -> list[Row]:
        with self._read() as conn:
            return rows(conn.execute(sa.select(channels).order_by(channels.c.name)))

    def delete_channel(self, name: str) -> bool:
        with self._write() as conn:
            return bool(conn.execute(channels.delete().where(channels.c.name == name))
                        .rowcount)

    # ------------------------------------------------------------------ outbox
    def add_notification(self, *, channel: str, run_id: str | None, kind: str, details: Any,
                         at: float) -> int:
        """:func:`add_notification` in a transaction of its own."""
        with self._write() as conn:
            return add_notification(conn, channel=channel, run_id=run_id, kind=kind,
                                    details=details, at=at)

    def next_notification_due(self) -> float | None:
        """When the earliest pending delivery is due (None: none is pending)."""
        n = notifications.c
        with self._read() as conn:
            due = conn.execute(sa.select(sa.func.min(n.next_attempt_at))
                               .where(PENDING_ONLY)).scalar()
        return None if due is None else float(due)

    def claim_notifications(self, now: float, limit: int, hold_until: float,
                            claim: str) -> list[Row]:
        """Take up to ``limit`` pending deliveries due by ``now`` for one delivery attempt
        each: their attempt count goes up and they are not due again before ``hold_until``
        (a deliverer that dies mid-delivery leaves them to be retried then)."""
        n = notifications.c
        due = (sa.select(n.id).where(PENDING_ONLY, n.next_attempt_at <= now)
               .order_by(n.next_attempt_at, n.id).limit(limit)
               .with_for_update(skip_locked=True))
        with self._write() as conn:
            ids = [r[0] for r in conn.execute(due)]
            if not ids:
                return []
            conn.execute(notifications.update().where(n.id.in_(ids)).values(
                claim=claim, next_attempt_at=hold_until, attempts=n.attempts + 1,
                updated_at=now))
            return rows(conn.execute(sa.select(notifications).where(n.id.in_(ids))
                                     .order_by(n.id)))

    def finish_notification(self, notification_id: int, claim: str,
                            values: Mapping[str, Any]) -> bool:
        """Record an attempt's outcome, if the row is still held under ``claim``."""
        n = notifications.c
        stmt = (notifications.update()
                .where(n.id == notification_id, n.claim == claim, PENDING_ONLY)
                .values(claim=None, **values))
        with self._write() as conn:
            return bool(conn.execute(stmt).rowcount)

    def list_notifications(self, *, run_id: str | None = None, channel: str | None = None,
                           status: str | None = None, before_id: int | None = None,
                           limit: int = 50, existing_runs_only: bool = False) -> list[Row]:
        """The delivery log, newest first. ``existing_runs_only`` keeps the rows of runs that
        exist (what a non-operator may see), dropping those of no run or a deleted one."""
        n = notifications.c
        stmt = sa.select(*_LOG_COLS)
        if existing_runs_only:
            stmt = stmt.where(sa.exists().where(runs.c.id == n.run_id))
        if run_id is not None:
            stmt = stmt.where(n.run_id == run_id)
        if channel is not None:
            stmt = stmt.where(n.channel == channel)
        if status is not None:
            stmt = stmt.where(n.status == status)
        if before_id is not None:
            stmt = stmt.where(n.id < before_id)
        with self._read() as conn:
            return rows(conn.execute(stmt.order_by(n.id.desc()).limit(limit)))

    def get_notifications(self, ids: Sequence[int]) -> list[Row]:
        """These deliveries as the log shows them, by id."""
        n = notifications.c
        with self._read() as conn:
            return rows(conn.execute(sa.select(*_LOG_COLS).where(n.id.in_(list(ids)))
                                     .order_by(n.id)))
