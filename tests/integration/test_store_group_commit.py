"""SQLite group commit: writers that queue up share one transaction, and stay independent.

Real SQLite files and real threads. A slow first writer makes the others queue behind it, so
they join its transaction; what each writer did must still count or fail on its own.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from runyard import errors
from runyard.store import open_store
from runyard.store.engine import sqlite_url
from runyard.store.group_commit import MAX_GROUP
from runyard.store.schema import workers
from runyard.store.sqlite import SQLiteStore


class Boom(Exception):
    pass


def worker_row(host: str) -> dict[str, Any]:
    return {"host_id": host, "hostname": host, "capabilities": {"host_id": host},
            "has_cuda": False, "slots": 1, "registered_at": 1.0, "last_seen_at": 1.0}


def hosts_in(url: str) -> set[str]:
    # A separate engine: only committed rows are visible to it.
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return {r[0] for r in conn.execute(sa.select(workers.c.host_id))}
    finally:
        engine.dispose()


def run_writers(store: SQLiteStore, n: int, body: Any) -> tuple[dict[int, BaseException],
                                                                  dict[int, Any]]:
    """Writer 0 holds the turn until the others wait for it; returns (errors, the shared
    transaction each writer ran in)."""
    failures: dict[int, BaseException] = {}
    groups: dict[int, Any] = {}
    first_in = threading.Event()

    def writer(i: int) -> None:
        if i:
            first_in.wait(30)
        try:
            with store.transaction() as tx:
                groups[i] = store.group_commit._group
                if i == 0:
                    first_in.set()
                    deadline = time.monotonic() + 30
                    queue = store.group_commit._turn._queue
                    while len(queue) < n - 1 and time.monotonic() < deadline:
                        time.sleep(0.005)
                body(i, tx)
        except BaseException as exc:  # recorded and asserted on
            failures[i] = exc

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return failures, groups


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Any:
    s = open_store(sqlite_url(tmp_path / "runyard.db"))
    assert isinstance(s, SQLiteStore)
    yield s
    s.close()


def test_queued_writers_share_a_commit_and_a_failing_one_undoes_only_its_own(
        sqlite_store: SQLiteStore) -> None:
    def body(i: int, tx: Any) -> None:
        tx.upsert_worker(worker_row(f"host-{i}"))
        if i % 3 == 1:
            raise Boom(f"writer {i}")

    n = 10
    failures, groups = run_writers(sqlite_store, n, body)
    # They ran in shared transactions, not one each.
    assert len({id(g) for g in groups.values()}) < n
    assert sorted(failures) == [i for i in range(n) if i % 3 == 1]
    assert all(isinstance(e, Boom) and str(e) == f"writer {i}" for i, e in failures.items())
    assert hosts_in(sqlite_store.url) == {f"host-{i}" for i in range(n) if i % 3 != 1}


def test_a_failing_first_writer_rolls_back_alone_and_the_others_go_on(
        sqlite_store: SQLiteStore) -> None:
    # The first writer of a transaction runs without a savepoint (it has the transaction to
    # itself); when it fails, those queued behind it start a new one.
    def body(i: int, tx: Any) -> None:
        tx.upsert_worker(worker_row(f"host-{i}"))
        if i == 0:
            raise Boom("first")

    failures, groups = run_writers(sqlite_store, 4, body)
    assert list(failures) == [0] and isinstance(failures[0], Boom)
    assert all(groups[i] is not groups[0] for i in (1, 2, 3))
    assert groups[1] is groups[2] is groups[3]
    assert hosts_in(sqlite_store.url) == {"host-1", "host-2", "host-3"}
    with sqlite_store.transaction() as tx:  # and the store goes on working
        tx.upsert_worker(worker_row("after"))
    assert "after" in hosts_in(sqlite_store.url)


def test_only_the_writers_joining_a_transaction_open_savepoints(
        sqlite_store: SQLiteStore) -> None:
    # Inside a savepoint SQLite journals each page a writer changes (a temporary file past
    # 64 KiB): a fifth of a claim batch's time. The first writer has no need of one.
    with sqlite_store.transaction() as tx:  # opens the kept writer connection
        tx.upsert_worker(worker_row("warm"))
    assert sqlite_store.group_commit._writer is not None
    raw = sqlite_store.group_commit._writer.connection.driver_connection
    sql: list[str] = []
    raw.set_trace_callback(sql.append)  # type: ignore[union-attr]
    try:
        with sqlite_store.transaction() as tx:
            tx.upsert_worker(worker_row("alone"))
        assert not [s for s in sql if "SAVEPOINT" in s] and "COMMIT" in sql
        sql.clear()
        _, groups = run_writers(sqlite_store, 3,
                                lambda i, tx: tx.upsert_worker(worker_row(f"h{i}")))
    finally:
        raw.set_trace_callback(None)  # type: ignore[union-attr]
    assert groups[0] is groups[1] is groups[2]
    assert [s for s in sql if s.startswith("SAVEPOINT")] == ["SAVEPOINT writer"] * 2


def test_a_conflict_inside_a_group_is_that_writers_conflict(sqlite_store: SQLiteStore) -> None:
    # Primary-key clash: writers 1 and 2 insert the same row; whichever comes second in the
    # shared transaction fails alone, and the first one's row is kept.
    def body(i: int, tx: Any) -> None:
        tx.conn.execute(workers.insert().values(**worker_row(f"host-{min(i, 1)}")))

    failures, groups = run_writers(sqlite_store, 3, body)
    assert len(failures) == 1
    (loser, exc), = failures.items()
    assert loser in (1, 2) and isinstance(exc, errors.Conflict)
    assert groups[loser] is groups[3 - loser]  # the clash was inside one transaction
    assert hosts_in(sqlite_store.url) == {"host-0", "host-1"}


def test_a_failed_commit_reaches_every_writer_of_the_group(sqlite_store: SQLiteStore) -> None:
    # A foreign-key check deferred to COMMIT (a test device: Runyard defers none) makes the
    # shared commit fail; every writer that waited on it must hear so, and nothing is kept.
    def body(i: int, tx: Any) -> None:
        tx.upsert_worker(worker_row(f"host-{i}"))
        if i == 2:
            tx.conn.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
            tx.conn.exec_driver_sql(
                "INSERT INTO attempts (id, run_id, number, host_id, lease, lease_expires_at, "
                "active, claimed_at) VALUES ('a1', 'no-such-run', 1, 'h', 'l', 1, 1, 1)")

    failures, groups = run_writers(sqlite_store, 4, body)
    shared = {i for i, g in groups.items() if g is groups[2]}
    assert len(shared) >= 2
    assert sorted(failures) == sorted(shared)
    assert all(isinstance(e, errors.StoreError) and "FOREIGN KEY" in str(e)
               for e in failures.values())
    kept = {f"host-{i}" for i in range(4) if i not in shared}
    assert hosts_in(sqlite_store.url) == kept
    # The store goes on working afterwards.
    with sqlite_store.transaction() as tx:
        tx.upsert_worker(worker_row("after"))
    assert hosts_in(sqlite_store.url) == kept | {"after"}


def test_writers_keep_one_connection_which_close_gives_back(tmp_path: Path) -> None:
    store = open_store(sqlite_url(tmp_path / "runyard.db"))
    assert isinstance(store, SQLiteStore)
    used = set()
    for i in range(3):
        with store.transaction() as tx:
            tx.upsert_worker(worker_row(f"h{i}"))
            used.add(id(tx.conn.connection.driver_connection))
    assert len(used) == 1
    # A writer that fails before its first statement does not lose the connection for others.
    with pytest.raises(Boom), store.transaction():
        raise Boom()
    with store.transaction() as tx:
        assert id(tx.conn.connection.driver_connection) in used
    pool = store.engine.pool
    assert pool.checkedout() == 1  # type: ignore[attr-defined]
    store.close()
    assert pool.checkedout() == 0  # type: ignore[attr-defined]
    assert hosts_in(store.url) == {"h0", "h1", "h2"}


def test_a_group_is_bounded(sqlite_store: SQLiteStore) -> None:
    n = MAX_GROUP + 8
    failures, groups = run_writers(sqlite_store, n,
                                   lambda i, tx: tx.upsert_worker(worker_row(f"h{i}")))
    assert failures == {}
    assert len(hosts_in(sqlite_store.url)) == n
    sizes = [sum(1 for g in groups.values() if g is group)
             for group in {id(g): g for g in groups.values()}.values()]
    assert 1 < max(sizes) <= MAX_GROUP and sum(sizes) == n
