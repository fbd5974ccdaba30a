"""Core statements compiled once and run on the driver's cursor, for the store's hottest
statements: the claim's (:mod:`runyard.store.claims`), the reads of a run or attempt by id,
and the inserts of events and attempts.

On every ``Connection.execute`` SQLAlchemy rebuilds the statement's cache key, looks the
compiled form up and sets up an execution context; for these statements that bookkeeping
costs more than the database work, and on SQLite much of it happens under the write lock
that every process on the file waits for. A :class:`Prepared` keeps the table definitions as
the one source of SQL: the statement is still written in Core and compiled by the dialect,
once, and the column types' own bind and result processors are applied (through
SQLAlchemy's public type API), so rows read the same as through ``Connection.execute``.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

Processor = Callable[[Any], Any]


class _Compiled:
    __slots__ = ("sql", "order", "defaults", "fixed", "binds", "columns", "types", "dialect",
                 "results", "_procs", "_in_order")

    def __init__(self, stmt: sa.Executable, dialect: sa.Dialect,
                 column_keys: tuple[str, ...] | None) -> None:
        compiled = stmt.compile(dialect=dialect,  # type: ignore[attr-defined]
                                column_keys=list(column_keys) if column_keys else None)
        self.sql: str = compiled.string
        # Positional drivers (SQLite's qmark) take a tuple in this order; named ones a dict.
        self.order: tuple[str, ...] | None = (tuple(compiled.positiontup)
                                              if compiled.positional else None)
        names: dict[Any, str] = compiled.bind_names
        # Values of the binds written into the statement itself (`status == "queued"`).
        self.defaults: dict[str, Any] = {
            name: bp.value for bp, name in names.items() if not bp.required}
        self.binds: dict[str, Processor] = {}
        for bp, name in names.items():
            proc = bp.type.dialect_impl(dialect).bind_processor(dialect)
            if proc is not None:
                self.binds[name] = proc
        cols = list(getattr(stmt, "selected_columns", None) or ())
        self.columns = tuple(c.key for c in cols)
        self.types = tuple(c.type for c in cols)
        # The constants' values as the driver takes them, processed once.
        self.fixed = {name: (self.binds[name](v) if name in self.binds else v)
                      for name, v in self.defaults.items()}
        # Few binds have a processor (booleans, JSON): going through those, not through every
        # value, and ordering with one C call, keeps parameter processing off the claim's
        # critical path.
        self._procs = tuple(self.binds.items())
        self._in_order: Callable[[dict[str, Any]], tuple[Any, ...]] | None = None
        if self.order:
            getter = operator.itemgetter(*self.order)
            self._in_order = (getter if len(self.order) > 1
                              else lambda merged: (getter(merged),))
        self.dialect = dialect
        # The columns with a result processor, and the processor: some depend on the type
        # the driver reports, so they are found at the first result.
        self.results: tuple[tuple[str, Processor], ...] | None = None

    def params(self, values: Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        merged = {**self.fixed, **values}
        for name, proc in self._procs:
            if name in values:
                merged[name] = proc(values[name])
        if self.order is None:
            return merged
        return () if self._in_order is None else self._in_order(merged)

    def rows(self, cursor: Any) -> list[dict[str, Any]]:
        raw = cursor.fetchall()
        if self.results is None:
            found = (t.dialect_impl(self.dialect).result_processor(self.dialect, d[1])
                     for t, d in zip(self.types, cursor.description, strict=True))
            self.results = tuple((key, proc) for key, proc in zip(self.columns, found,
                                                                  strict=True) if proc)
        keys, procs = self.columns, self.results
        # Most columns need no processing: the dict is built in C, then the few are fixed.
        out = [dict(zip(keys, r, strict=True)) for r in raw]
        if procs:
            for row in out:
                for key, proc in procs:
                    v = row[key]
                    if v is not None:
                        row[key] = proc(v)
        return out


class Prepared:
    """A statement built once (binds named with :func:`sqlalchemy.bindparam`), compiled per
    dialect on first use. ``column_keys``: for an INSERT or UPDATE, the columns it sets from
    binds of the same names."""

    __slots__ = ("stmt", "column_keys", "_by_dialect")

    def __init__(self, stmt: sa.Executable, column_keys: tuple[str, ...] | None = None) -> None:
        self.stmt = stmt
        self.column_keys = column_keys
        self._by_dialect: dict[str, _Compiled] = {}

    @classmethod
    def cached(cls, key: Hashable, build: Callable[[], Prepared]) -> Prepared:
        """The statement stored under ``key``, built on first use (statements that vary by
        a few flags, or by the set of columns a caller writes)."""
        p = _CACHE.get(key)
        if p is None:
            p = _CACHE[key] = build()
        return p

    def compiled(self, dialect: sa.Dialect) -> _Compiled:
        """The statement as ``dialect`` runs it, compiled on first use."""
        c = self._by_dialect.get(dialect.name)
        if c is None:
            c = self._by_dialect[dialect.name] = _Compiled(self.stmt, dialect, self.column_keys)
        return c

    def _execute(self, conn: sa.Connection, values: Mapping[str, Any]) -> tuple[_Compiled, Any]:
        c = self.compiled(conn.dialect)
        return c, execute_raw(conn, c.sql, c.params(values))

    def run(self, conn: sa.Connection, **values: Any) -> int:
        """Execute; return the number of rows changed."""
        _, cursor = self._execute(conn, values)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def run_many(self, conn: sa.Connection, rows: Sequence[Mapping[str, Any]]) -> int:
        """Execute once per row of values (the driver's ``executemany``); return the number
        of rows changed in all."""
        c = self.compiled(conn.dialect)
        params: Any = [c.params(values) for values in rows]
        cursor = conn.connection.cursor()
        try:
            try:
                cursor.executemany(c.sql, params)
            except conn.dialect.loaded_dbapi.Error as exc:
                raise sa.exc.DBAPIError.instance(c.sql, params, exc,
                                                 conn.dialect.loaded_dbapi.Error,
                                                 hide_parameters=True) from exc
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def all(self, conn: sa.Connection, **values: Any) -> list[dict[str, Any]]:
        """Execute; return every row as a dict keyed by column name."""
        c, cursor = self._execute(conn, values)
        try:
            return c.rows(cursor)
        finally:
            cursor.close()

    def first(self, conn: sa.Connection, **values: Any) -> dict[str, Any] | None:
        rows = self.all(conn, **values)
        return rows[0] if rows else None


def fetch_many(conn: sa.Connection, calls: Sequence[tuple[Prepared, Mapping[str, Any]]]
               ) -> list[list[dict[str, Any]]]:
    """Run several queries and return each one's rows (as :meth:`Prepared.all`), in one round
    trip to the server where the driver can pipeline them (psycopg with libpq 14 or later),
    else one after the other. A batch of claims reads this way what it needs to choose."""
    dbapi_conn: Any = conn.connection.dbapi_connection
    if len(calls) < 2 or not _pipelines(type(dbapi_conn).__module__):
        return [p.all(conn, **values) for p, values in calls]
    started: list[tuple[_Compiled, Any]] = []
    error = conn.dialect.loaded_dbapi.Error
    try:
        try:
            # The queries go out together; leaving the block sends one Sync and collects
            # every result.
            with dbapi_conn.pipeline():
                for p, values in calls:
                    c = p.compiled(conn.dialect)
                    cursor = conn.connection.cursor()
                    started.append((c, cursor))
                    cursor.execute(c.sql, c.params(values))
        except error as exc:
            sql = ";\n".join(c.sql for c, _ in started)
            raise sa.exc.DBAPIError.instance(sql, None, exc, error) from exc
        return [c.rows(cursor) for c, cursor in started]
    finally:
        for _, cursor in started:
            cursor.close()


@functools.cache
def _pipelines(driver_module: str) -> bool:
    """Whether connections of the driver with this module take queries in pipeline mode:
    psycopg 3's, when its libpq is version 14 or later."""
    if driver_module.split(".")[0] != "psycopg":
        return False
    import psycopg

    return bool(psycopg.Pipeline.is_supported())


def execute_raw(conn: sa.Connection, sql: str, params: Sequence[Any] | Mapping[str, Any]
                ) -> Any:
    """Run driver-level SQL on a new cursor of ``conn``'s connection and return the cursor
    (the caller closes it). Driver errors come out as the exception classes
    ``Connection.execute`` raises (``IntegrityError`` ...), their parameters hidden as the
    engine hides them."""
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql, params)
    except conn.dialect.loaded_dbapi.Error as exc:
        cursor.close()
        raise sa.exc.DBAPIError.instance(sql, params, exc, conn.dialect.loaded_dbapi.Error,
                                         hide_parameters=True) from exc
    return cursor


# A race only builds the same statement twice; the dict itself stays consistent.
_CACHE: dict[Hashable, Prepared] = {}
