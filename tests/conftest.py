"""Fixtures every tier shares: a clean environment, real SQLite files and throwaway databases on
the machine's PostgreSQL. Each tier's conftest.py holds the fixtures of that tier."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .support.migrated import migrated_sqlite

PG_ADMIN_URL = os.environ.get("RUNYARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
#: The server of PG_ADMIN_URL, without a database.
_PG_SERVER = PG_ADMIN_URL.rsplit("/", 1)[0]


def _pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return True
    except Exception:
        return False


PG_AVAILABLE = _pg_available()
# CI must not silently skip the PostgreSQL half of the suite.
if os.environ.get("CI") and not PG_AVAILABLE:
    raise RuntimeError(f"PostgreSQL is required in CI but {PG_ADMIN_URL} is not reachable")


#: Where each tier's tests start in the run: real processes first, so that under pytest-xdist
#: (scripts/test.sh) the many quick unit tests fill the workers' last minutes instead of one
#: slow end-to-end test running alone at the end.
#: The Slurm tier is two xdist groups (a cluster each, tests/slurm/conftest.py): it starts
#: first, or its workers would run it alone after the rest.
_TIER_ORDER = {"slurm": 0, "e2e": 1, "integration": 2, "unit": 3}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Orders the tests (slow ones, then by tier) and keeps on one xdist worker the tests of a
    module that share a module-scoped fixture (a server, a browser), so it starts once; the
    other tests are spread one by one (``--dist loadgroup``)."""

    def rank(item: pytest.Item) -> tuple[int, int]:
        tier = item.nodeid.split("/")[1] if item.nodeid.startswith("tests/") else ""
        return (0 if item.get_closest_marker("slow") else 1, _TIER_ORDER.get(tier, 4))

    items.sort(key=rank)  # stable: within a rank, the order of the files
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            continue
        shared = any(defs[-1].scope in ("module", "class", "package")
                     for name in info.names_closure if (defs := info.name2fixturedefs.get(name)))
        if shared:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
                   ) -> None:
    """No test sees the developer's RUNYARD_* settings or writes into their data directory."""
    for key in list(os.environ):
        if key.startswith("RUNYARD_") and key != "RUNYARD_TEST_PG":
            monkeypatch.delenv(key)
    monkeypatch.setenv("RUNYARD_DATA_DIR", str(tmp_path_factory.mktemp("data")))
    # System metrics (sys/ tags) are off unless a test turns them on: a run that a loaded
    # machine stretches past the sampling interval would otherwise grow tags and points that
    # tests counting a run's metrics do not expect (tests/e2e/test_sysmetrics.py sets it).
    monkeypatch.setenv("RUNYARD_SYS_INTERVAL_S", "0")


class PgDatabases:
    """Migrated databases for tests, cloned from a migrated template.

    A migrated database that a test gave back is emptied and handed to the next test instead
    of being dropped: cloning costs PostgreSQL about 0.15 s and dropping one more, emptying
    about 5 ms. It is reused only when it still has the template's shape (its tables and
    their columns, indexes, sequences and revision), with its sequences restarted and any
    connection a test left behind ended; anything else is dropped, as are unmigrated ones.
    The rest are dropped at the end. An emptied database keeps its table statistics, so the
    planner may choose otherwise than on a new one: tests of plans ask for a new one
    (``reused=False``)."""

    #: The shape of a database: its schemas, the objects in ``public`` with their columns,
    #: and its revision.
    _SHAPE = ("SELECT (SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace "
              "WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'), "
              "(SELECT string_agg(c.relname || ':' || c.relkind::text, ',' ORDER BY "
              "c.relname, c.relkind) FROM pg_class c JOIN pg_namespace n ON "
              "n.oid = c.relnamespace WHERE n.nspname = 'public'), "
              "(SELECT string_agg(c.relname || '.' || a.attname || ':' || "
              "format_type(a.atttypid, a.atttypmod), ',' ORDER BY c.relname, a.attnum) "
              "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n "
              "ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND a.attnum > 0 "
              "AND NOT a.attisdropped), "
              "(SELECT string_agg(version_num, ',') FROM alembic_version)")

    def __init__(self) -> None:
        import psycopg

        self._psycopg = psycopg
        self.template: str | None = None
        self.created: list[str] = []
        self._idle: list[str] = []
        self._shape: tuple[str, ...] | None = None
        self._empty_it = ""

    def _admin(self):  # type: ignore[no-untyped-def]
        return self._psycopg.connect(PG_ADMIN_URL, autocommit=True)

    def _connect(self, name: str):  # type: ignore[no-untyped-def]
        return self._psycopg.connect(f"{_PG_SERVER}/{name}", autocommit=True)

    def url(self, name: str) -> str:
        return f"{_PG_SERVER.replace('postgresql://', 'postgresql+psycopg://')}/{name}"

    def new(self, migrated: bool = True, reused: bool = True) -> str:
        """A migrated database (``reused``: possibly one another test gave back), or an
        empty one."""
        if migrated and reused and self._idle:
            return self.url(self._idle.pop())
        name = f"runyard_t_{os.getpid()}_{secrets.token_hex(4)}"
        with self._admin() as conn:
            if migrated:
                conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self._template()}"')
            else:
                conn.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return self.url(name)

    def _template(self) -> str:
        if self.template is None:
            from runyard.store import open_store

            name = f"runyard_tpl_{os.getpid()}_{secrets.token_hex(4)}"
            with self._admin() as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            self.created.append(name)
            open_store(self.url(name)).close()
            with self._connect(name) as conn:
                self._shape = tuple(conn.execute(self._SHAPE).fetchone())
                tables = [row[0] for row in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                    "AND tablename <> 'alembic_version'")]
                sequences = [row[0] for row in conn.execute(
                    "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'")]
                seeded = any(conn.execute(f'SELECT EXISTS (SELECT 1 FROM "{t}")').fetchone()[0]
                             for t in tables)
            # A migration that writes rows would need them back: such a template is not reused.
            if not seeded:
                # Foreign keys are not checked (replica role): every table is emptied anyway.
                self._empty_it = "SET LOCAL session_replication_role = replica; " + " ".join(
                    [f'DELETE FROM "{t}";' for t in tables]
                    + [f'ALTER SEQUENCE "{q}" RESTART;' for q in sequences])
            self.template = name
        return self.template

    def _emptied(self, name: str) -> bool:
        """Whether ``name`` still has the template's shape and is now empty."""
        if not self._empty_it:
            return False
        try:
            with self._connect(name) as conn:
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
                if tuple(conn.execute(self._SHAPE).fetchone()) != self._shape:
                    return False
                with conn.transaction():
                    conn.execute(self._empty_it)
            return True
        except self._psycopg.Error:
            return False

    def drop(self, url: str) -> None:
        """Give back a test's database: emptied for the next test, or dropped."""
        name = url.rsplit("/", 1)[1]
        if self._emptied(name):
            self._idle.append(name)
            return
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.remove(name)

    def drop_all(self) -> None:
        with self._admin() as conn:
            for name in reversed(self.created):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_databases() -> Iterator[PgDatabases]:
    if not PG_AVAILABLE:
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}")
    dbs = PgDatabases()
    yield dbs
    dbs.drop_all()


def fresh_database(request: pytest.FixtureRequest, dialect: str, directory: Path, *,
                   reused: bool = True) -> str:
    """The URL of a fresh, migrated database of ``dialect`` (a SQLite file in ``directory``),
    given back when ``request``'s fixture ends. ``reused=False``: a PostgreSQL database no
    other test had, for tests of the planner (an emptied one keeps its table statistics)."""
    if dialect == "sqlite":
        from runyard.store.engine import sqlite_url

        return sqlite_url(str(migrated_sqlite(directory / "runyard.db")))
    dbs: PgDatabases = request.getfixturevalue("pg_databases")
    url = dbs.new(reused=reused)
    request.addfinalizer(lambda: dbs.drop(url))
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, migrated database URL of each dialect."""
    return fresh_database(request, request.param, tmp_path)


@pytest.fixture
def empty_db_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]
                 ) -> Callable[[str], str]:
    """A factory of empty (unmigrated) databases, by dialect."""

    def make(dialect: str) -> str:
        if dialect == "sqlite":
            from runyard.store.engine import sqlite_url

            return sqlite_url(os.path.join(tmp_path, f"empty-{secrets.token_hex(3)}.db"))
        dbs: PgDatabases = request.getfixturevalue("pg_databases")
        return dbs.new(migrated=False)

    return make
