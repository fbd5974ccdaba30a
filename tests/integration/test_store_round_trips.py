"""A batch of claims reads what it needs in few round trips: on PostgreSQL, the queries of a
step go out together in psycopg's pipeline mode, and the rows are those each query gives alone.

Round trips are counted in libpq's own protocol trace of the real server's connection: each
one ends with the server's ReadyForQuery.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from runyard import eligibility
from runyard.claiming import Ask
from runyard.queue import Queue
from runyard.store.base import WorkerFilter
from runyard.store.prepared import Prepared, fetch_many

from ..support.factories import caps, submit

FILTERS = [
    WorkerFilter(has_cuda=False, gpus=0, max_vram_gib=0, ram_gib=16, cpus=8),
    WorkerFilter(has_cuda=True, gpus=2, max_vram_gib=24, ram_gib=64, cpus=32),
    WorkerFilter(has_cuda=False, gpus=0, max_vram_gib=0, ram_gib=16, cpus=8,
                 skip_prefer_cuda=True,
                 labels_keys=eligibility.served_labels_keys({"pool": "a"})),
]


def fill(queue: Queue) -> None:
    for i in range(6):
        submit(queue, f"plain-{i}", priority=i % 3)
        submit(queue, f"cuda-{i}", require_cuda=True)
        submit(queue, f"prefers-{i}", prefer_cuda=True)
        submit(queue, f"pool-a-{i}", labels={"pool": "a"})
        submit(queue, f"big-{i}", min_ram_gib=32)


def test_candidates_read_together_are_those_read_one_by_one(queue: Queue) -> None:
    fill(queue)
    with queue.store.transaction() as tx:
        together = tx.claim_candidates_many([(wf, 7) for wf in FILTERS])
        alone = [tx.claim_candidates(wf, None, 7) for wf in FILTERS]
    assert together == alone
    assert [len(p) for p in together] == [7, 7, 7]
    assert all(not r["require_cuda"] for r in together[0])
    assert any(r["require_cuda"] for r in together[1])
    assert all(not r["prefer_cuda"] for r in together[2])


def test_the_claim_view_is_the_workers_and_the_free_cuda_slots(queue: Queue) -> None:
    queue.fleet.register(caps("cpu", slots=3))
    queue.fleet.register(caps("gpu", gpus=1, slots=2))
    submit(queue, "r", require_cuda=True)
    assert queue.claim("gpu") is not None
    with queue.store.transaction() as tx:
        states, free = tx.claim_view(["cpu", "gpu", "ghost"], 0.0)
        assert states == tx.worker_states(["cpu", "gpu"])
    assert set(states) == {"cpu", "gpu"} and states["gpu"]["active_attempts"] == 1
    assert free == {"gpu": 1}


def test_the_claim_view_reads_more_hosts_than_one_query_takes(queue: Queue) -> None:
    hosts = [f"h{i:02d}" for i in range(70)]  # one query takes 64
    for h in hosts:
        queue.fleet.register(caps(h))
    with queue.store.transaction() as tx:
        states, free = tx.claim_view([*hosts, "ghost", hosts[0]], 0.0)
    assert sorted(states) == hosts and free == {}


@contextmanager
def round_trips(queue: Queue) -> Iterator[list[int]]:
    """Counts the server's ReadyForQuery messages on every connection checked out inside."""
    engine = queue.store.engine  # type: ignore[attr-defined]
    fd, path = tempfile.mkstemp(suffix=".trace")
    traced: list[object] = []

    def trace(dbapi_conn, _record, _proxy) -> None:  # type: ignore[no-untyped-def]
        dbapi_conn.pgconn.trace(fd)
        traced.append(dbapi_conn)

    count: list[int] = []
    sa.event.listen(engine, "checkout", trace)
    try:
        yield count
    finally:
        sa.event.remove(engine, "checkout", trace)
        for conn in traced:
            conn.pgconn.untrace()  # type: ignore[attr-defined]
        os.close(fd)
        with open(path) as f:
            count.append(f.read().count("ReadyForQuery"))
        os.unlink(path)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_batch_of_claims_takes_five_round_trips_on_postgresql(queue: Queue) -> None:
    fill(queue)
    hosts = [caps("cpu", slots=4), caps("gpu", gpus=2, ram=64, cpus=32, slots=4),
             caps("pool-a", labels={"pool": "a"}, slots=4), caps("big", ram=64, slots=4)]
    for c in hosts:
        queue.fleet.register(c)
    asks = [Ask(c.host_id, None, "t") for c in hosts for _ in range(2)]
    with round_trips(queue) as count:
        got = queue.claimer.serve(asks)
    assert all(c is not None and not isinstance(c, BaseException) for c in got)
    # BEGIN (psycopg waits for it even in pipeline mode); the workers with the free CUDA
    # slots; the candidates of all four kinds of worker; the claim's writes; COMMIT. One
    # query at a time, this batch took nine.
    assert count == [5]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_failing_query_among_them_raises_and_the_connection_recovers(queue: Queue) -> None:
    ok = Prepared(sa.select(sa.literal_column("1").label("one")))
    bad = Prepared(sa.select(sa.literal_column("1 / 0").label("boom")))
    with pytest.raises(sa.exc.DataError, match="division by zero"):
        with queue.store.transaction() as tx:
            fetch_many(tx.conn, [(ok, {}), (bad, {}), (ok, {})])  # type: ignore[attr-defined]
    with queue.store.transaction() as tx:
        assert fetch_many(tx.conn, [(ok, {}), (ok, {})]) == [  # type: ignore[attr-defined]
            [{"one": 1}], [{"one": 1}]]
