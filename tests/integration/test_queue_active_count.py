"""``workers.active_attempts`` (kept by triggers) against a count of the attempts, through
every way an attempt starts and ends, on both dialects."""

from __future__ import annotations

import time

import sqlalchemy as sa

from runyard.queue import Queue
from runyard.store.schema import attempts

from ..support.factories import caps, submit


def check(queue: Queue) -> dict[str, int]:
    """The stored counts, after asserting they equal a fresh count of active attempts."""
    stored = {w["host_id"]: w["active_attempts"] for w in queue.store.list_workers()}
    with queue.store.engine.connect() as conn:  # type: ignore[attr-defined]
        rows = conn.execute(sa.select(attempts.c.host_id, sa.func.count())
                            .where(attempts.c.active == sa.true())
                            .group_by(attempts.c.host_id)).all()
    counted = dict(rows)
    assert stored == {h: counted.get(h, 0) for h in stored}
    return stored


def test_the_count_follows_every_start_and_end_of_an_attempt(queue: Queue) -> None:
    queue.fleet.register(caps("a", slots=10))
    queue.fleet.register(caps("b", slots=10))
    runs = [submit(queue, f"r{i}") for i in range(6)]
    got = [queue.claim("a") for _ in range(3)] + [queue.claim("b")]
    assert all(got) and check(queue) == {"a": 3, "b": 1}
    c0, c1, c2, c3 = got  # type: ignore[misc]
    queue.heartbeat(c0.attempt_id, c0.lease, running=True)
    assert check(queue) == {"a": 3, "b": 1}
    queue.complete(c0.attempt_id, c0.lease)
    queue.fail(c1.attempt_id, c1.lease, reason="worker_shutdown")  # requeued
    queue.cancel(c3.run["id"])  # a claimed run
    assert check(queue) == {"a": 1, "b": 0}
    # Every lease lapses: the sweep ends the rest as lost.
    later = Queue(queue.store, clock=lambda: time.time() + 100_000)
    assert later.sweep().lost == [c2.run["id"]]
    assert check(queue) == {"a": 0, "b": 0}
    # A run started by hand is in the local hosts' namespace: a worker of the same host id,
    # registered before or after, never counts it.
    local = queue.start_local({"name": "notebook"}, host_id="laptop")
    queue.fleet.register(caps("laptop", slots=2))
    assert check(queue)["laptop"] == 0
    mine = queue.claim("laptop")
    assert mine is not None
    queue.fleet.register(caps("laptop", slots=3))  # a refresh keeps the count
    assert check(queue)["laptop"] == 1
    queue.complete(local.attempt_id, local.lease)
    assert check(queue)["laptop"] == 1
    queue.complete(mine.attempt_id, mine.lease)
    assert check(queue)["laptop"] == 0
    # Deleting a run deletes its attempts: an active one (only the store lets that happen)
    # is taken off the count too.
    again = queue.claim("b")
    assert again is not None and check(queue)["b"] == 1
    with queue.store.transaction() as tx:
        tx.delete_run(again.run["id"])
    assert check(queue) == {"a": 0, "b": 0, "laptop": 0}
    queue.delete(runs[0]["id"])  # an ended run: nothing active goes
    assert check(queue) == {"a": 0, "b": 0, "laptop": 0}


def test_slots_are_judged_on_the_count(queue: Queue) -> None:
    queue.fleet.register(caps("w", slots=2))
    for i in range(3):
        submit(queue, f"r{i}")
    first, second = queue.claim("w"), queue.claim("w")
    assert first and second and queue.claim("w") is None  # both slots busy
    queue.complete(first.attempt_id, first.lease)
    assert queue.claim("w") is not None  # a slot came back
