"""SQLite: the engine's settings, and the SQL this database writes its own way.

One writer at a time: every write transaction begins with ``BEGIN IMMEDIATE``, so no row
locks are needed and a read-then-write transaction never fails half-way on a busy lock.
Writers of one process share commits (:mod:`runyard.store.group_commit`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from runyard import errors, local
from runyard.store import claims, ingest, rollups
from runyard.store.access import translated_errors
from runyard.store.base import Grant
from runyard.store.dialect import Dialect, Write
from runyard.store.group_commit import GroupCommit
from runyard.store.metrics import POINT_COLUMNS, POINT_UPSERT
from runyard.store.prepared import execute_raw
from runyard.store.sql import SQLStore

#: Seconds a writer waits for SQLite's lock before giving up.
BUSY_TIMEOUT_S = 30.0
#: Rows one statement carries at most (then halves: see :func:`_statement_sizes`).
_ROWS_PER_STATEMENT = 512


def create_engine(url: sa.URL, **kwargs: Any) -> sa.Engine:
    """An engine for the SQLite file at ``url`` (read-only for
    :func:`runyard.store.engine.sqlite_read_only_url`'s URLs)."""
    if url.database in (None, "", ":memory:"):
        raise errors.ConfigError("database URL: SQLite needs a file (sqlite:///path/runyard.db)")
    read_only = url.query.get("mode") == "ro"
    if not read_only:
        local.ensure_data_dir(Path(url.database).parent)  # usually the data directory
    engine = sa.create_engine(
        url,
        # We issue BEGIN ourselves (below); the driver must not.
        connect_args={"isolation_level": None, "timeout": BUSY_TIMEOUT_S,
                      "check_same_thread": False},
        pool_size=8,
        max_overflow=64,
        # The connection used last has the freshest page cache: each SQLite connection keeps
        # its own, and one that sat idle while others wrote reloads every page they changed.
        pool_use_lifo=True,
        **kwargs,
    )

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        if not read_only:  # a reader takes the file's mode as it is
            cur.execute("PRAGMA journal_mode=WAL")
        # FULL: an acknowledged write is on disk before we answer, so neither a process
        # crash nor a power cut loses it (NORMAL would only survive the former).
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # Writers take the lock up front so a read-then-write transaction can never fail with
        # SQLITE_BUSY half-way; readers use a deferred BEGIN and never block writers (WAL).
        # On the driver's cursor: every write (a claim, a metrics batch) begins here, and
        # Connection.exec_driver_sql's bookkeeping costs more than the statement.
        sql = "BEGIN" if read_only or conn.get_execution_options().get("readonly") \
            else "BEGIN IMMEDIATE"
        execute_raw(conn, sql, ()).close()

    return engine


class SQLiteDialect(Dialect):
    mark = "?"

    def insert(self, table: sa.Table) -> Any:
        return sqlite.insert(table)

    def claim_runs(self, conn: sa.Connection, grants: Sequence[Grant]) -> int:
        return claims.sqlite_claim_runs(conn, grants)

    def contains(self, column: Any, text: str) -> sa.ColumnElement[bool]:
        # instr, not LIKE: SQLite's LIKE ignores the case of ASCII letters.
        return sa.func.instr(sa.cast(column, sa.Text), sa.literal(text, sa.Text)) > 0

    def point_writes(self, run_id: str, attempt: int, batch: ingest.Batch) -> list[Write]:
        """Multi-row statements, one tag at a time: SQLite then runs one statement per few
        hundred rows rather than one per row, which is much cheaper."""
        out: list[Write] = []
        for tag, col in batch.by_tag.items():
            lead: list[Any] = [run_id, attempt, tag]
            cols: list[Sequence[Any]]
            if col.specials is not None:
                form, cols = "vsa", [col.steps, col.values, col.specials, col.times()]
            elif type(col.ats) is list:
                form, cols = "va", [col.steps, col.values, col.ats]
            else:
                form, cols = "v", [col.steps, col.values]
                lead.append(col.ats)
            out += _multi_row(functools.partial(_points_sql, form=form), lead, cols)
        return out

    def rollup_writes(self, run_id: str, aggs: tuple[list[rollups.Blocks],
                                                     list[rollups.RollupRow]]) -> list[Write]:
        """Multi-row statements likewise: a finite tag's rows bind its tag and attempt once,
        the other rows bind all their columns."""
        blocks, others = aggs
        out: list[Write] = []
        for b in blocks:
            out += _multi_row(rollups.sqlite_merge_sql, [run_id, b.tag, b.attempt],
                              [b.shifts, b.blocks, b.ns, b.vmins, b.vmaxs, b.last_steps,
                               b.last_values])
        if others:
            out += _multi_row(rollups.sqlite_upsert_sql, [run_id],
                              [list(c) for c in zip(*others, strict=True)])
        return out


class SQLiteStore(SQLStore):
    """Write transactions go through :class:`GroupCommit`."""

    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(engine, SQLiteDialect())
        self.group_commit = GroupCommit(engine, timeout_s=BUSY_TIMEOUT_S)

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        with translated_errors(), self.group_commit.transaction() as conn:
            yield conn

    def close(self) -> None:
        self.group_commit.close()
        super().close()


#: The store class of this database, for :func:`runyard.store.open_store`.
STORE = SQLiteStore

# Python's sqlite3 binds a float, int or str directly, but hands None (or any other object)
# to its adapter lookup first, which fails slowly (it builds an AttributeError message), and
# copies every string it binds. So the statements below bind what a whole statement shares
# once (run, attempt, tag, and a time shared by every point), and no None in the common
# case: points of tags with only finite values, and their rollups, leave `special` out of
# their binds and write NULL for it.


def _multi_row(sql: Callable[[int], str], lead: list[Any], columns: list[Sequence[Any]]
               ) -> list[Write]:
    """Rows given as ``columns`` (equally long), cut into statements of
    :func:`_statement_sizes` rows, each bound as ``lead`` then the rows' values in turn."""
    width, count = len(columns), len(columns[0])
    # The rows' values, row after row: one C-level slice assignment per column.
    params: list[Any] = [None] * (width * count)
    for k, column in enumerate(columns):
        params[k::width] = column
    out, i = [], 0
    for n in _statement_sizes(count, _ROWS_PER_STATEMENT):
        out.append(Write(sql(n), lead + params[i:i + n * width]))
        i += n * width
    return out


def _statement_sizes(count: int, most: int) -> Iterator[int]:
    """Rows per statement for ``count`` rows: ``most`` at a time, then powers of two, so
    only a few distinct statement texts exist and the driver's statement cache keeps them."""
    while count >= most:
        yield most
        count -= most
    size = most
    while count:
        while size > count:
            size >>= 1
        yield size
        count -= size


#: ``metric_points`` columns from ``value`` on, by the form of a points statement's rows:
#: ``(step, value)`` with the time bound once (``?4``), ``(step, value, at)``, or
#: ``(step, value, special, at)``.
_POINT_FORMS = {"v": "column2, NULL, ?4", "va": "column2, NULL, column3",
                "vsa": "column2, column3, column4"}


@functools.lru_cache(maxsize=64)
def _points_sql(rows: int, form: str) -> str:
    """Upsert ``rows`` points of one tag bound as ``run_id, attempt, tag`` (then the time
    for ``form`` "v"), then each row of ``form`` (``WHERE true`` parses the upsert clause
    after a SELECT)."""
    values = "(" + ", ".join(["?"] * (1 + len(form))) + ")"  # the step, then the form's
    return (f"INSERT INTO metric_points ({', '.join(POINT_COLUMNS)}) "
            f"SELECT ?1, ?3, column1, ?2, {_POINT_FORMS[form]} "
            f"FROM (VALUES {', '.join([values] * rows)}) WHERE true {POINT_UPSERT}")
