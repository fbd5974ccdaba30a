"""Fencing: a worker whose lease lapsed cannot change a run another worker now owns."""

from __future__ import annotations

import pytest

from runyard import errors
from runyard.queue import Queue

from ..support.factories import caps, submit


def _snapshot(q: Queue, run_id: str) -> tuple[object, ...]:
    return (q.store.get_run(run_id), q.store.list_attempts(run_id),
            q.store.list_events(run_id, limit=1000))


def test_lapsed_lease_is_fenced_after_another_worker_claims(store) -> None:  # type: ignore[no-untyped-def]
    now = [1000.0]
    q = Queue(store, stale_after_s=30, clock=lambda: now[0])
    q.fleet.register(caps("a"))
    q.fleet.register(caps("b"))
    run = submit(q)
    a = q.claim("a")
    assert a is not None
    q.heartbeat(a.attempt_id, a.lease, running=True)
    q.record_progress(a.attempt_id, a.lease, {"schema": "runyard.progress/v1", "step": 5})

    now[0] += 31  # A goes silent past its lease
    swept = q.sweep()
    assert swept.lost == [run["id"]] and swept.requeued == [run["id"]]
    lost = q.store.list_attempts(run["id"])[0]
    assert lost["termination_reason"] == "lost" and not lost["active"]

    b = q.claim("b")
    assert b is not None and b.attempt == 2
    q.heartbeat(b.attempt_id, b.lease, running=True)
    before = _snapshot(q, run["id"])

    for call in (
        lambda: q.heartbeat(a.attempt_id, a.lease, running=True),
        lambda: q.record_progress(a.attempt_id, a.lease, {"schema": "runyard.progress/v1"}),
        lambda: q.complete(a.attempt_id, a.lease),
        lambda: q.fail(a.attempt_id, a.lease, reason="user_error", exit_code=1),
    ):
        with pytest.raises(errors.LeaseConflict, match="no longer active"):
            call()
    assert _snapshot(q, run["id"]) == before

    # B's lease works; a forged lease on B's attempt does not.
    with pytest.raises(errors.LeaseConflict, match="does not match"):
        q.complete(b.attempt_id, a.lease)
    assert _snapshot(q, run["id"]) == before
    assert q.complete(b.attempt_id, b.lease)["status"] == "completed"


def test_heartbeat_keeps_the_lease_alive(store) -> None:  # type: ignore[no-untyped-def]
    now = [0.0]
    q = Queue(store, stale_after_s=30, clock=lambda: now[0])
    q.fleet.register(caps("a"))
    submit(q)
    a = q.claim("a")
    assert a is not None
    for _ in range(5):
        now[0] += 20
        q.heartbeat(a.attempt_id, a.lease)
        assert q.sweep().lost == []
    now[0] += 31
    assert len(q.sweep().lost) == 1


def test_lost_while_stopping_ends_stopped(store) -> None:  # type: ignore[no-untyped-def]
    now = [0.0]
    q = Queue(store, stale_after_s=30, clock=lambda: now[0])
    q.fleet.register(caps("a"))
    run = submit(q)
    a = q.claim("a")
    assert a is not None
    q.stop(run["id"], grace_s=5)
    now[0] += 31
    q.sweep()
    out = q.store.get_run(run["id"])
    assert out["status"] == "stopped" and out["termination_reason"] == "lost"


def test_unknown_attempt_is_not_found(queue: Queue) -> None:
    with pytest.raises(errors.NotFound):
        queue.heartbeat("nope", "lease")


@pytest.mark.parametrize("late", ["heartbeat", "progress", "complete", "fail"])
def test_lapsed_lease_is_over_before_any_sweep(store, late: str) -> None:  # type: ignore[no-untyped-def]
    """A call after the lease lapsed is refused even though no sweep ran yet: the attempt
    ends as lost right then (requeued by policy), exactly as the sweep would have ended it."""
    now = [1000.0]
    q = Queue(store, stale_after_s=30, clock=lambda: now[0])
    q.fleet.register(caps("a"))
    run = submit(q)
    a = q.claim("a")
    assert a is not None
    q.heartbeat(a.attempt_id, a.lease, running=True)
    now[0] += 31
    call = {"heartbeat": lambda: q.heartbeat(a.attempt_id, a.lease),
            "progress": lambda: q.record_progress(a.attempt_id, a.lease, {"step": 1}),
            "complete": lambda: q.complete(a.attempt_id, a.lease),
            "fail": lambda: q.fail(a.attempt_id, a.lease, reason="user_error", exit_code=1)}
    with pytest.raises(errors.LeaseConflict, match=r"no longer active \(lost\)"):
        call[late]()
    after = q.store.get_run(run["id"])
    assert after["status"] == "queued" and after["termination_reason"] == "lost"
    attempt = q.store.list_attempts(run["id"])[0]
    assert attempt["termination_reason"] == "lost" and not attempt["active"]
    assert q.sweep().lost == []  # nothing left for the sweeper
    b = q.claim("a")
    assert b is not None and b.attempt == 2
