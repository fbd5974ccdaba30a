"""The seam between the store's shared SQL and the two databases.

Everything that differs between SQLite and PostgreSQL is a method of :class:`Dialect`,
implemented once in :mod:`runyard.store.sqlite` and once in :mod:`runyard.store.postgres`;
the shared code in :mod:`runyard.store.sql` and its mixins never asks which database it is on.
Row locks are not among the differences: SQLAlchemy renders ``FOR UPDATE`` (and ``SKIP
LOCKED``) on PostgreSQL and nothing on SQLite, where ``BEGIN IMMEDIATE`` already keeps every
other writer out.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa

from runyard.store import ingest, rollups
from runyard.store.base import Grant
from runyard.store.prepared import execute_raw


class Write(NamedTuple):
    """One hand-written statement of a metrics write: ``params`` is one row of values, or
    with ``many`` a list of rows for the driver's ``executemany``."""

    sql: str
    params: Any
    many: bool = False


class Dialect(abc.ABC):
    """What one database does its own way."""

    #: The driver's parameter marker in hand-written SQL.
    mark: str

    @abc.abstractmethod
    def insert(self, table: sa.Table) -> Any:
        """The database's INSERT construct for ``table`` (both offer ``on_conflict_do_nothing``
        and ``on_conflict_do_update``)."""

    @abc.abstractmethod
    def claim_runs(self, conn: sa.Connection, grants: Sequence[Grant]) -> int:
        """Write a batch of claims (see :meth:`runyard.store.base.Transaction.claim_runs`);
        returns how many runs were still as the claim read them, and so changed."""

    @abc.abstractmethod
    def point_writes(self, run_id: str, attempt: int, batch: ingest.Batch) -> list[Write]:
        """The statements that upsert a batch's points into ``metric_points``."""

    @abc.abstractmethod
    def rollup_writes(self, run_id: str, aggs: tuple[list[rollups.Blocks],
                                                     list[rollups.RollupRow]]) -> list[Write]:
        """The statements that merge a batch's aggregates into ``metric_rollups``."""

    @abc.abstractmethod
    def contains(self, column: Any, text: str) -> sa.ColumnElement[bool]:
        """Whether ``column``'s stored text holds ``text`` (case-sensitive, no wildcards)."""

    def estimated_rows(self, conn: sa.Connection, table: str) -> int | None:
        """The planner's estimate of ``table``'s row count, where the database keeps one
        (None: count the rows)."""
        return None


def run_writes(conn: sa.Connection, writes: Sequence[Write]) -> None:
    """Execute :meth:`Dialect.point_writes` / :meth:`Dialect.rollup_writes` statements."""
    for w in writes:
        if w.many:
            conn.exec_driver_sql(w.sql, w.params)
        else:
            execute_raw(conn, w.sql, w.params).close()
