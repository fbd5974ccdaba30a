"""Migrations: from empty to head, a full round trip, and equality with schema.py."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from runyard.eligibility import labels_key
from runyard.store import open_store
from runyard.store.schema import metadata

DIALECTS = ["sqlite", "postgresql"]
HEAD = "0015"
# Indexes with a DESC column, which Alembic cannot reflect on SQLite, and how their SQL ends.
_DESC_INDEXES = {
    "ix_runs_claim": "prefer_cuda, labels_key, executor) WHERE status = 'queued'",
    "ix_runs_claim_cpu":
        "prefer_cuda, labels_key, executor) WHERE status = 'queued' AND require_cuda = 0",
}


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


@pytest.mark.parametrize("dialect", DIALECTS)
def test_upgrade_from_empty_creates_every_table(dialect: str,
                                                empty_db_url: Callable[[str], str]) -> None:
    url = empty_db_url(dialect)
    store = open_store(url, upgrade=False)
    assert store.current_revision() is None
    store.upgrade()
    assert store.current_revision() == HEAD
    assert _tables(url) == set(metadata.tables)
    store.close()


@pytest.mark.parametrize("dialect", DIALECTS)
def test_downgrade_then_upgrade_round_trip(dialect: str,
                                           empty_db_url: Callable[[str], str]) -> None:
    url = empty_db_url(dialect)
    store = open_store(url)
    store.downgrade("base")
    assert store.current_revision() is None
    assert _tables(url) == set()
    store.upgrade()
    assert _tables(url) == set(metadata.tables)
    store.close()


@pytest.mark.parametrize("dialect", DIALECTS)
def test_migrations_match_schema(dialect: str, empty_db_url: Callable[[str], str]) -> None:
    url = empty_db_url(dialect)
    open_store(url).close()
    engine = sa.create_engine(url)

    def include(obj, name, kind, reflected, compare_to):  # type: ignore[no-untyped-def]
        # Alembic cannot reflect a DESC index column on SQLite (it reports the index as
        # removed and added again); that index is checked by its SQL below instead.
        return not (dialect == "sqlite" and kind == "index" and name in _DESC_INDEXES)

    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True,
                                                     "include_object": include})
        diff = compare_metadata(ctx, metadata)
        if dialect == "sqlite":
            for name, tail in _DESC_INDEXES.items():
                ddl = conn.exec_driver_sql(
                    "SELECT sql FROM sqlite_master WHERE name = ?", (name,)).scalar_one()
                assert "(status, priority DESC, created_at, id, gpus," in ddl, ddl
                assert ddl.endswith(tail), ddl
    engine.dispose()
    assert diff == []


def test_upgrade_is_idempotent(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path}/x.db"
    open_store(url).close()
    store = open_store(url)  # second start: nothing to do, nothing fails
    assert store.current_revision() == HEAD
    store.close()


def test_sqlite_settings(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = open_store(f"sqlite:///{tmp_path}/x.db")
    with store.engine.connect() as conn:  # type: ignore[attr-defined]
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    store.close()


def test_sqlite_reuses_the_connection_used_last(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Each SQLite connection has its own page cache; the one used last is the warm one.
    store = open_store(f"sqlite:///{tmp_path}/x.db")
    engine = store.engine  # type: ignore[attr-defined]
    a, b = engine.connect(), engine.connect()
    a_raw, b_raw = a.connection.driver_connection, b.connection.driver_connection
    a.close()
    b.close()
    for _ in range(3):
        with engine.connect() as c:
            assert c.connection.driver_connection is b_raw
    assert a_raw is not b_raw
    store.close()


@pytest.mark.parametrize("dialect", DIALECTS)
def test_0002_fills_labels_key_of_existing_runs(dialect: str,
                                               empty_db_url: Callable[[str], str]) -> None:
    url = empty_db_url(dialect)
    store = open_store(url, upgrade=False)
    store.upgrade("0001")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for run_id, constraints in [("a", {"labels": {"pool": "a", "disk": "ssd"}}),
                                    ("b", {"labels": {}}), ("c", {"gpus": 1})]:
            conn.execute(sa.text(
                "INSERT INTO runs (id, name, config, constraints, status, retry_on_exit_codes,"
                " created_at, updated_at) VALUES (:id, :id, '{}', :c, 'queued', '[]', 1, 1)"),
                {"id": run_id, "c": json.dumps(constraints)})
    store.upgrade()
    with engine.connect() as conn:
        got = dict(conn.execute(sa.text("SELECT id, labels_key FROM runs")).all())
    engine.dispose()
    assert got == {"a": labels_key({"pool": "a", "disk": "ssd"}), "b": "", "c": ""}
    assert got["a"] == '{"disk":"ssd","pool":"a"}'
    store.downgrade("0001")
    assert store.current_revision() == "0001"
    store.close()


@pytest.mark.parametrize("dialect", DIALECTS)
def test_0004_counts_the_active_attempts_of_existing_workers(
        dialect: str, empty_db_url: Callable[[str], str]) -> None:
    url = empty_db_url(dialect)
    store = open_store(url, upgrade=False)
    store.upgrade("0003")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for host in ("busy", "idle"):
            conn.execute(sa.text(
                "INSERT INTO workers (host_id, capabilities, registered_at, last_seen_at) "
                "VALUES (:h, '{}', 1, 1)"), {"h": host})
        for n, (host, active) in enumerate([("busy", True), ("busy", True), ("busy", False),
                                            ("idle", False), ("gone", True)]):
            conn.execute(sa.text(
                "INSERT INTO runs (id, name, config, constraints, status, retry_on_exit_codes,"
                " created_at, updated_at) VALUES (:id, :id, '{}', '{}', 'running', '[]', 1, 1)"),
                {"id": f"r{n}"})
            conn.execute(sa.text(
                "INSERT INTO attempts (id, run_id, number, host_id, lease, lease_expires_at, "
                "active, claimed_at) VALUES (:id, :id, 1, :h, 'l', 1, :a, 1)"),
                {"id": f"r{n}", "h": host, "a": active})
    store.upgrade()

    def counts() -> dict[str, int]:
        with engine.connect() as conn:
            return dict(conn.execute(sa.text(  # type: ignore[arg-type]
                "SELECT host_id, active_attempts FROM workers")).all())

    assert counts() == {"busy": 2, "idle": 0}
    with engine.begin() as conn:  # and the triggers keep it from there
        conn.execute(sa.text("UPDATE attempts SET active = :f WHERE id = 'r0'"), {"f": False})
    assert counts() == {"busy": 1, "idle": 0}
    store.downgrade("0003")
    with engine.begin() as conn:  # no trigger left behind to write a dropped column
        conn.execute(sa.text("UPDATE attempts SET active = :t WHERE id = 'r0'"), {"t": True})
    engine.dispose()
    store.close()


@pytest.mark.parametrize("dialect", DIALECTS)
def test_0007_lets_a_run_name_no_probe_interval_and_keeps_every_row(
        dialect: str, empty_db_url: Callable[[str], str]) -> None:
    url = empty_db_url(dialect)
    store = open_store(url, upgrade=False)
    store.upgrade("0006")
    engine = sa.create_engine(url)
    insert_run = ("INSERT INTO runs (id, name, config, constraints, status, retry_on_exit_codes,"
                  " created_at, updated_at{col}) VALUES (:id, :id, '{{}}', '{{}}', 'running',"
                  " '[]', 1, 1{val})")
    with engine.begin() as conn:
        conn.execute(sa.text(insert_run.format(col="", val="")), {"id": "old"})
        conn.execute(sa.text(insert_run.format(col=", probe_interval_s", val=", 2.5")),
                     {"id": "named"})
        conn.execute(sa.text(
            "INSERT INTO attempts (id, run_id, number, host_id, lease, lease_expires_at, "
            "active, claimed_at) VALUES ('a', 'old', 1, 'h', 'l', 1, :t, 1)"), {"t": True})
    store.upgrade()

    def probes() -> dict[str, float | None]:
        with engine.connect() as conn:
            return dict(conn.execute(sa.text(  # type: ignore[arg-type]
                "SELECT id, probe_interval_s FROM runs")).all())

    with engine.begin() as conn:
        conn.execute(sa.text(insert_run.format(col="", val="")), {"id": "none"})
        assert conn.execute(sa.text("SELECT count(*) FROM attempts")).scalar_one() == 1
    assert probes() == {"old": 1.0, "named": 2.5, "none": None}
    store.downgrade("0006")
    assert probes() == {"old": 1.0, "named": 2.5, "none": 1.0}
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(sa.text(insert_run.format(col=", probe_interval_s", val=", NULL")),
                     {"id": "null"})
    store.upgrade()
    assert probes() == {"old": 1.0, "named": 2.5, "none": 1.0}
    engine.dispose()
    store.close()


@pytest.mark.parametrize("dialect", DIALECTS)
def test_0011_binds_existing_worker_tokens_to_the_hosts_they_registered(
        dialect: str, empty_db_url: Callable[[str], str]) -> None:
    url = empty_db_url(dialect)
    store = open_store(url, upgrade=False)
    store.upgrade("0010")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for n, (name, role) in enumerate([("shared", "worker"), ("solo", "worker"),
                                          ("fresh", "worker"), ("admin", "operator")]):
            conn.execute(sa.text(
                "INSERT INTO tokens (name, role, token_hash, created_at) "
                "VALUES (:n, :r, :h, 1)"), {"n": name, "r": role, "h": f"{n:064d}"})
        for host, token in [("gpu-2", "shared"), ("gpu-1", "shared"), ("box", "solo"),
                            ("laptop", "admin"), ("orphan", None)]:
            conn.execute(sa.text(
                "INSERT INTO workers (host_id, capabilities, token_name, registered_at, "
                "last_seen_at) VALUES (:h, '{}', :t, 1, 1)"), {"h": host, "t": token})
    store.upgrade()

    def bindings() -> dict[str, tuple[str | None, int | None]]:
        with engine.connect() as conn:
            return {r.name: (r.hosts, r.max_hosts) for r in conn.execute(sa.text(
                "SELECT name, hosts, max_hosts FROM tokens"))}

    # Each keeps working as the hosts it runs; one that ran none binds on its first claim.
    assert bindings() == {"shared": ("gpu-1,gpu-2", None), "solo": ("box", None),
                          "fresh": (None, None), "admin": (None, None)}
    store.downgrade("0010")
    with engine.connect() as conn:
        assert "hosts" not in {c["name"] for c in sa.inspect(conn).get_columns("tokens")}
        assert conn.execute(sa.text("SELECT count(*) FROM tokens")).scalar_one() == 4
    engine.dispose()


@pytest.mark.parametrize("dialect", DIALECTS)
def test_0013_adds_tags_and_fills_status_updated_at(dialect: str,
                                                   empty_db_url: Callable[[str], str]) -> None:
    url = empty_db_url(dialect)
    store = open_store(url, upgrade=False)
    store.upgrade("0012")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO runs (id, name, config, constraints, status, retry_on_exit_codes,"
            " created_at, updated_at) VALUES ('a', 'a', '{}', '{}', 'queued', '[]', 1, 7.5)"))
        conn.execute(sa.text("INSERT INTO events (run_id, seq, at, kind, status, actor)"
                             " VALUES ('a', 1, 1, 'status', 'queued', 'x')"))
    store.upgrade()
    run = store.get_run("a")
    assert run is not None and run["tags"] == [] and run["status_updated_at"] == 7.5
    store.downgrade("0012")
    with engine.connect() as conn:
        # Dropping the columns kept the run and what hangs off it.
        assert conn.execute(sa.text("SELECT count(*) FROM events")).scalar() == 1
        assert conn.execute(sa.text("SELECT count(*) FROM runs")).scalar() == 1
    engine.dispose()
    store.upgrade()
    assert store.current_revision() == HEAD
    store.close()


@pytest.mark.parametrize("dialect", DIALECTS)
def test_0015_adds_attempts_workdir_and_keeps_attempts(dialect: str,
                                                      empty_db_url: Callable[[str], str]
                                                      ) -> None:
    url = empty_db_url(dialect)
    store = open_store(url, upgrade=False)
    store.upgrade("0014")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO runs (id, name, config, constraints, status, retry_on_exit_codes,"
            " created_at, updated_at) VALUES ('a', 'a', '{}', '{}', 'running', '[]', 1, 1)"))
        conn.execute(sa.text(
            "INSERT INTO attempts (id, run_id, number, host_id, lease, lease_expires_at,"
            " active, claimed_at) VALUES ('t', 'a', 1, 'h', 'L', 9, true, 1)"))
    store.upgrade()
    (att,) = store.list_attempts("a")
    assert att["workdir"] is None  # an attempt from before: nobody reported it
    store.downgrade("0014")
    with engine.connect() as conn:
        assert "workdir" not in {c["name"] for c in sa.inspect(conn).get_columns("attempts")}
        assert conn.execute(sa.text("SELECT count(*) FROM attempts")).scalar() == 1
    engine.dispose()
    store.upgrade()
    assert store.current_revision() == HEAD
    store.close()
