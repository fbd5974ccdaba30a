"""Engines for the two databases: the URL picks the database's module
(:mod:`runyard.store.sqlite` or :mod:`runyard.store.postgres`), which holds its settings."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from runyard import errors

#: The module of each database, by SQLAlchemy backend name.
_BACKENDS = {"sqlite": "runyard.store.sqlite", "postgresql": "runyard.store.postgres"}


def sqlite_url(path: str | os.PathLike[str]) -> str:
    """The URL of the SQLite file at ``path`` (escaped: a ``?`` or ``%`` in a directory name
    is part of the path, not a query)."""
    url = sa.URL.create("sqlite", database=str(Path(path).expanduser().resolve()))
    return url.render_as_string(hide_password=False)


def sqlite_read_only_url(path: str | os.PathLike[str]) -> str:
    """A URL opening the SQLite file at ``path`` read-only: SQLite itself refuses every write
    (and a missing file), so whatever reads through it cannot change the database."""
    # The path is a SQLite URI's (percent-encoded) inside SQLAlchemy's URL (encoded again).
    where = quote(str(Path(path).expanduser().resolve()))
    url = sa.URL.create("sqlite", database=f"file:{where}", query={"mode": "ro", "uri": "true"})
    return url.render_as_string(hide_password=False)


def backend(name: str) -> ModuleType:
    """The module of the database SQLAlchemy calls ``name`` (``engine.dialect.name``)."""
    return importlib.import_module(_BACKENDS[name])


def create_engine(url: str, **kwargs: Any) -> sa.Engine:
    """Create an engine for ``sqlite:///file`` or ``postgresql+psycopg://...``.

    Bound parameters never appear in the engine's log or in its errors' messages: they are
    the values written, secrets among them.
    """
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError as exc:
        raise errors.ConfigError(f"database URL: cannot parse {url!r}") from exc
    name = parsed.get_backend_name()
    if name not in _BACKENDS:
        raise errors.ConfigError(
            f"database URL: unsupported backend {name!r} "
            "(use sqlite:///path or postgresql+psycopg://...)")
    engine: sa.Engine = backend(name).create_engine(parsed, **{"hide_parameters": True,
                                                                **kwargs})
    return engine
