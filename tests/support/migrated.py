"""Migrated SQLite files for tests, copied from one template per test process: migrating a
new database costs more than the rest of most store tests and server starts (PostgreSQL's
test databases clone a template likewise, tests/conftest.py)."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
from pathlib import Path


@functools.cache
def _template_path() -> Path:
    from runyard.store import open_store
    from runyard.store.engine import sqlite_url

    directory = Path(tempfile.mkdtemp(prefix="runyard-template-"))
    atexit.register(shutil.rmtree, directory, True)
    path = directory / "runyard.db"
    open_store(sqlite_url(str(path))).close()
    for leftover in ("-wal", "-shm"):  # closed cleanly: everything is in the main file
        assert not os.path.exists(f"{path}{leftover}"), f"{path}{leftover}"
    return path


def migrated_sqlite(path: Path) -> Path:
    """Puts a migrated, empty database at ``path`` (its directory is made) and returns it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_template_path(), path)
    return path


def migrated_data_dir(data_dir: Path) -> Path:
    """Gives a server's data directory a migrated embedded database, unless it has one."""
    from runyard import local

    db = local.embedded_db_path(data_dir)
    if not db.exists():
        migrated_sqlite(db)
    return data_dir
