"""How the store's modules reach the database: a read connection, a write transaction, and
driver errors translated into Runyard's (:class:`Access`, the base of every part of
:class:`runyard.store.sql.SQLStore`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from runyard import errors
from runyard.store.base import Row
from runyard.store.dialect import Dialect
from runyard.store.schema import runs


@contextmanager
def translated_errors() -> Iterator[None]:
    """Driver errors as Runyard's: a constraint clash is a Conflict, the rest a StoreError.
    The engine hides bound parameters, so neither message carries the values written."""
    try:
        yield
    except sa.exc.IntegrityError as exc:
        raise errors.Conflict(f"conflicting write: {exc.orig}") from exc
    except sa.exc.OperationalError as exc:
        raise errors.StoreError(f"database error: {exc.orig}") from exc


def rows(result: sa.Result[Any]) -> list[Row]:
    """A result's rows as dicts keyed by column name."""
    return [dict(m) for m in result.mappings()]


def first(result: sa.Result[Any]) -> Row | None:
    """A result's first row as a dict, or None."""
    m = result.mappings().first()
    return None if m is None else dict(m)


class Access:
    """Connections over ``engine``, for the SQL of one :class:`Dialect`."""

    engine: sa.Engine
    ops: Dialect

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        """A write transaction: committed on success, rolled back on any exception."""
        with translated_errors(), self.engine.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        """A read-only connection (SQLite begins it deferred: it never blocks a writer)."""
        try:
            with self.engine.connect().execution_options(readonly=True) as conn:
                yield conn
        except sa.exc.OperationalError as exc:
            raise errors.StoreError(f"database error: {exc.orig}") from exc

    @staticmethod
    def _need_run(conn: sa.Connection, run_id: str) -> None:
        if conn.execute(sa.select(runs.c.id).where(runs.c.id == run_id)).first() is None:
            raise errors.NotFound(f"run {run_id!r} not found")
