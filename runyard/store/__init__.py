"""Persistence: one interface (:mod:`runyard.store.base`), SQLite and PostgreSQL behind it."""

from __future__ import annotations

from pathlib import Path

from runyard import local
from runyard.store.base import RunFilter, Store, Transaction, WorkerFilter
from runyard.store.engine import backend, create_engine, sqlite_url


def default_url(data_dir: str | Path | None = None) -> str:
    """The embedded SQLite database under the data directory."""
    return sqlite_url(local.embedded_db_path(Path(data_dir or local.data_dir())))


def open_store(url: str | None = None, *, upgrade: bool = True) -> Store:
    """Open (and by default migrate) the database at ``url``; SQLite under the data dir if None."""
    engine = create_engine(url or default_url())
    store: Store = backend(engine.dialect.name).STORE(engine)
    if upgrade:
        store.upgrade()
    return store


__all__ = ["RunFilter", "Store", "Transaction", "WorkerFilter", "default_url", "open_store"]
