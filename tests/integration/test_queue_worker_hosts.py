"""Workers' hosts on both dialects: local runs in their own namespace, deleting a worker, and
the sweeper forgetting workers long unseen."""

from __future__ import annotations

import pytest

from runyard import errors, models
from runyard.queue import Queue
from runyard.server.sweeper import Sweeper

from ..support.factories import caps, submit

DAY = 86400.0


def test_local_runs_never_occupy_a_workers_slots(queue: Queue) -> None:
    queue.fleet.register(caps("w", slots=1))
    local = queue.start_local({"name": "notebook"}, host_id="w")
    assert local.run["host_id"] != "w"
    submit(queue, "scheduled")
    got = queue.claim("w")
    assert got is not None and got.run["name"] == "scheduled"
    worker = queue.store.get_worker("w")
    assert worker is not None and worker["active_attempts"] == 1
    # A worker registering under the local run's recorded host id is a different host.
    with pytest.raises(errors.ValidationError):
        models.validate_host_id(local.run["host_id"], "host_id")
    queue.complete(local.attempt_id, local.lease)


@pytest.mark.parametrize("bad", ["../../x", "a/b", "", "-a"])
def test_local_host_ids_are_checked(queue: Queue, bad: str) -> None:
    with pytest.raises(errors.ValidationError) as info:
        queue.start_local({"name": "notebook"}, host_id=bad)
    assert info.value.field == "host_id"


def test_remove_refuses_a_worker_with_active_attempts(queue: Queue) -> None:
    with pytest.raises(errors.NotFound):
        queue.fleet.remove("ghost")
    queue.fleet.register(caps("w"))
    run = submit(queue)
    got = queue.claim("w")
    assert got is not None
    with pytest.raises(errors.Conflict) as info:
        queue.fleet.remove("w")
    assert run["id"] in info.value.message and got.attempt_id in info.value.message
    queue.complete(got.attempt_id, got.lease)
    queue.fleet.remove("w")
    assert queue.store.get_worker("w") is None
    queue.fleet.register(caps("w"))  # it registers again when it claims again
    assert queue.store.get_worker("w") is not None


def test_the_sweeper_forgets_workers_long_unseen_and_idle(queue: Queue) -> None:
    now = [1_000_000.0]
    q = Queue(queue.store, stale_after_s=365 * DAY, clock=lambda: now[0])  # no lease lapses
    for host in ("old", "busy", "fresh"):
        q.fleet.register(caps(host))
    submit(q)
    got = q.claim("busy")
    assert got is not None
    now[0] += 7 * DAY - 10
    q.fleet.register(caps("fresh"))
    now[0] += 20
    sweeper = Sweeper(q, 1.0, forget_workers_after_s=7 * DAY)
    sweeper.tick()
    assert [w["host_id"] for w in q.store.list_workers()] == ["busy", "fresh"]
    never = Sweeper(q, 1.0, forget_workers_after_s=0)
    now[0] += 30 * DAY
    assert q.fleet.forget(seen_before=now[0] - 1) == ["fresh"]  # busy has its attempt
    q.fleet.register(caps("fresh"))
    never.tick()
    assert {w["host_id"] for w in q.store.list_workers()} == {"busy", "fresh"}
