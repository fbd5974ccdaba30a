"""The run lifecycle on a real database: transitions, events, stop/cancel/requeue/restart/delete."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys

import pytest

from runyard import errors, models
from runyard.models import Status
from runyard.queue import Queue
from runyard.store.base import RunFilter

from ..support.factories import caps, submit


def _seqs(q: Queue, run_id: str) -> list[int]:
    return [e["seq"] for e in q.store.list_events(run_id, limit=1000)]


def test_happy_path_events_are_gap_free(queue: Queue) -> None:
    queue.fleet.register(caps("w1"))
    run = submit(queue)
    claim = queue.claim("w1")
    assert claim is not None and claim.run["id"] == run["id"] and claim.attempt == 1
    queue.heartbeat(claim.attempt_id, claim.lease, running=True)
    done = queue.complete(claim.attempt_id, claim.lease)
    assert done["status"] == "completed" and done["termination_reason"] == "completed"
    assert done["ended_at"] is not None and done["exit_code"] == 0
    events = queue.store.list_events(run["id"])
    assert [e["status"] for e in events] == ["queued", "claimed", "running", "completed"]
    assert _seqs(queue, run["id"]) == [1, 2, 3, 4]
    assert events[1]["details"] == {"worker": "w1"}


ALL = list(Status)


@pytest.mark.parametrize(("current", "target"), [
    (a, b) for a, b in itertools.product(ALL, ALL) if b not in models.TRANSITIONS[a]
])
def test_every_illegal_transition_names_both_states(current: Status, target: Status) -> None:
    with pytest.raises(errors.IllegalTransition) as info:
        models.check_transition(current, target, run_id="r1")
    assert f"'{current.value}'" in str(info.value) and f"'{target.value}'" in str(info.value)
    assert info.value.http_status == 409


def test_illegal_operations_on_real_runs_change_nothing(queue: Queue) -> None:
    queue.fleet.register(caps("w1"))
    run = submit(queue)
    c = queue.claim("w1")
    assert c is not None
    queue.complete(c.attempt_id, c.lease)
    before = queue.store.get_run(run["id"])
    for op, target in [(queue.cancel, "cancelled"), (queue.requeue, "queued")]:
        with pytest.raises(errors.IllegalTransition, match=f"'completed' to '{target}'"):
            op(run["id"])
    with pytest.raises(errors.IllegalTransition, match="'completed' to 'stopping'"):
        queue.stop(run["id"])
    assert queue.store.get_run(run["id"]) == before

    queued = submit(queue, "q2")
    with pytest.raises(errors.IllegalTransition, match="'queued' to 'queued'"):
        queue.requeue(queued["id"])


def test_stop_running_run_reaches_worker_and_ends_stopped(queue: Queue) -> None:
    queue.fleet.register(caps("w1"))
    run = submit(queue)
    c = queue.claim("w1")
    assert c is not None
    assert queue.heartbeat(c.attempt_id, c.lease, running=True).stop is False
    stopping = queue.stop(run["id"], grace_s=10, actor="alice")
    assert stopping["status"] == "stopping" and stopping["stop_deadline"] is not None
    order = queue.heartbeat(c.attempt_id, c.lease)
    assert order.stop and order.intent == "stop" and 0 < (order.grace_s or 0) <= 10
    # A second stop can only shorten the grace period.
    queue.stop(run["id"], grace_s=1)
    assert (queue.heartbeat(c.attempt_id, c.lease).grace_s or 0) <= 1
    ended = queue.fail(c.attempt_id, c.lease, reason="user_error", exit_code=-15)
    assert ended["status"] == "stopped" and ended["termination_reason"] == "stopped"
    assert ended["exit_code"] == -15
    events = queue.store.list_events(run["id"])
    assert events[3]["actor"] == "alice" and events[3]["status"] == "stopping"


def test_exit_zero_before_stop_was_delivered_is_completed(queue: Queue) -> None:
    queue.fleet.register(caps("w1"))
    run = submit(queue)
    c = queue.claim("w1")
    assert c is not None
    queue.stop(run["id"], grace_s=5)
    # The worker never heard of the stop (no heartbeat since): the work really finished.
    assert queue.complete(c.attempt_id, c.lease)["status"] == "completed"


def test_stop_queued_run_cancels_it(queue: Queue) -> None:
    run = submit(queue)
    out = queue.stop(run["id"])
    assert out["status"] == "cancelled" and out["ended_at"] is not None


def test_cancel_claimed_run_fences_its_lease(queue: Queue) -> None:
    queue.fleet.register(caps("w1"))
    run = submit(queue)
    c = queue.claim("w1")
    assert c is not None
    assert queue.cancel(run["id"])["status"] == "cancelled"
    with pytest.raises(errors.LeaseConflict):
        queue.heartbeat(c.attempt_id, c.lease, running=True)
    with pytest.raises(errors.IllegalTransition, match="'cancelled' to 'cancelled'"):
        queue.cancel(run["id"])


def test_cancel_running_run_is_refused(queue: Queue) -> None:
    queue.fleet.register(caps("w1"))
    run = submit(queue)
    c = queue.claim("w1")
    assert c is not None
    queue.heartbeat(c.attempt_id, c.lease, running=True)
    with pytest.raises(errors.IllegalTransition, match="'running' to 'cancelled'"):
        queue.cancel(run["id"])


def test_requeue_gives_a_new_attempt_and_a_fresh_budget(queue: Queue) -> None:
    queue.fleet.register(caps("w1"))
    run = submit(queue, max_attempts=1)
    c = queue.claim("w1")
    assert c is not None
    failed = queue.fail(c.attempt_id, c.lease, reason="lost")
    assert failed["status"] == "failed"  # max_attempts=1: no automatic retry
    assert queue.requeue(run["id"], actor="op")["status"] == "queued"
    c2 = queue.claim("w1")
    assert c2 is not None and c2.attempt == 2 and c2.run["id"] == run["id"]
    # The fresh budget allows one automatic retry of a lost attempt again? No: max_attempts=1.
    assert queue.fail(c2.attempt_id, c2.lease, reason="lost")["status"] == "failed"
    attempts = queue.store.list_attempts(run["id"])
    assert [a["number"] for a in attempts] == [1, 2]
    assert all(not a["active"] for a in attempts)


def test_restart_running_run_with_new_resources(queue: Queue) -> None:
    queue.fleet.register(caps("small", ram=4))
    run = submit(queue)
    c = queue.claim("small")
    assert c is not None
    queue.heartbeat(c.attempt_id, c.lease, running=True)
    out = queue.restart(run["id"], constraints={"min_ram_gib": 32})
    assert out["status"] == "stopping" and out["stop_intent"] == "restart"
    ended = queue.fail(c.attempt_id, c.lease, reason="user_error", exit_code=143)
    assert ended["status"] == "queued" and ended["min_ram_gib"] == 32
    assert queue.claim("small") is None  # no longer fits the small host
    queue.fleet.register(caps("big", ram=64))
    c2 = queue.claim("big")
    assert c2 is not None and c2.attempt == 2


def test_restart_of_ended_run_queues_it(queue: Queue) -> None:
    queue.fleet.register(caps("w1"))
    run = submit(queue)
    c = queue.claim("w1")
    assert c is not None
    queue.complete(c.attempt_id, c.lease)
    with pytest.raises(errors.IllegalTransition):
        queue.restart(run["id"])  # completed is final
    run2 = submit(queue, "b")
    queue.cancel(run2["id"])
    assert queue.restart(run2["id"])["status"] == "queued"


@pytest.mark.parametrize("acknowledged", [False, True])
def test_a_restarted_attempt_that_exits_0_ends_stopped_and_the_run_is_queued(
        queue: Queue, acknowledged: bool) -> None:
    queue.fleet.register(caps("w1"))
    run = submit(queue)
    c = queue.claim("w1")
    assert c is not None
    queue.heartbeat(c.attempt_id, c.lease, running=True)
    queue.restart(run["id"])
    if acknowledged:
        assert queue.heartbeat(c.attempt_id, c.lease).intent == "restart"
    out = queue.complete(c.attempt_id, c.lease)
    assert out["status"] == "queued" and out["termination_reason"] == "stopped"
    [attempt] = queue.store.list_attempts(run["id"])
    assert attempt["termination_reason"] == "stopped" and attempt["exit_code"] == 0
    last = queue.store.list_events(run["id"])[-1]
    assert last["status"] == "queued" and last["details"]["reason"] == "stopped"
    assert last["details"]["decision"] == "restart requested"


def _ended_local_run(queue: Queue) -> str:
    claim = queue.start_local({"name": "notebook"}, host_id="laptop")
    queue.fail(claim.attempt_id, claim.lease, reason="user_error", exit_code=1)
    return claim.run["id"]


@pytest.mark.parametrize("action", ["restart", "requeue"])
def test_an_ended_local_run_is_not_queued_again(queue: Queue, action: str) -> None:
    run_id = _ended_local_run(queue)
    before = queue.store.get_run(run_id)
    assert before is not None and before["status"] == "failed"
    with pytest.raises(errors.NotSchedulable, match="local run: only the process that "
                                                    f"started it can run it.*be {action}"):
        getattr(queue, action)(run_id)
    assert queue.store.get_run(run_id) == before


def test_an_active_local_run_is_not_restarted(queue: Queue) -> None:
    claim = queue.start_local({"name": "notebook"}, host_id="laptop")
    with pytest.raises(errors.NotSchedulable) as info:
        queue.restart(claim.run["id"])
    assert info.value.http_status == 409
    assert queue.heartbeat(claim.attempt_id, claim.lease).stop is False


def test_delete_removes_run_and_refuses_active(queue: Queue) -> None:
    queue.fleet.register(caps("w1"))
    run = submit(queue)
    c = queue.claim("w1")
    assert c is not None
    with pytest.raises(errors.Conflict, match="stop it first, then delete it"):
        queue.delete(run["id"])
    queue.complete(c.attempt_id, c.lease)
    assert queue.delete(run["id"]) == []
    assert queue.store.get_run(run["id"]) is None
    assert queue.store.list_events(run["id"]) == []
    assert queue.store.list_attempts(run["id"]) == []
    with pytest.raises(errors.NotFound):
        queue.delete(run["id"])


def test_job_key_submission_is_idempotent(queue: Queue) -> None:
    key = "a" * 64
    first, created = queue.submit({"name": "j", "command": ["x"], "job_key": key})
    again, created2 = queue.submit({"name": "j", "command": ["x"], "job_key": key})
    assert created and not created2 and first["id"] == again["id"]
    assert len(queue.store.list_runs(RunFilter())) == 1


def test_local_run_starts_running_with_a_lease(queue: Queue) -> None:
    claim = queue.start_local({"name": "notebook", "project": "p"}, host_id="laptop")
    assert claim.run["status"] == "running" and claim.run["executor"] == "local"
    queue.heartbeat(claim.attempt_id, claim.lease)
    assert queue.complete(claim.attempt_id, claim.lease)["status"] == "completed"
    assert [e["status"] for e in queue.store.list_events(claim.run["id"])] == [
        "queued", "claimed", "running", "completed"]


def test_stall_is_a_condition_not_a_kill(store) -> None:  # type: ignore[no-untyped-def]
    now = [1000.0]
    q = Queue(store, stale_after_s=60, clock=lambda: now[0])
    q.fleet.register(caps("w1"))
    run = submit(q, stall_after_s=30)
    c = q.claim("w1")
    assert c is not None
    q.heartbeat(c.attempt_id, c.lease, running=True)
    q.record_progress(c.attempt_id, c.lease, {"schema": "runyard.progress/v1", "step": 1})
    now[0] += 31
    q.heartbeat(c.attempt_id, c.lease)  # the host is alive...
    result = q.sweep()
    assert result.stalled == [run["id"]] and result.lost == []  # ...but training is stuck
    assert store.get_run(run["id"])["stalled"] is True
    assert store.get_run(run["id"])["status"] == "running"
    assert q.sweep().stalled == []  # raised once
    q.record_progress(c.attempt_id, c.lease, {"schema": "runyard.progress/v1", "step": 2})
    assert store.get_run(run["id"])["stalled"] is False
    kinds = [e["kind"] for e in store.list_events(run["id"])]
    assert kinds.count("stalled") == 1 and kinds.count("resumed") == 1


def test_bad_input_is_refused_and_nothing_written(queue: Queue) -> None:
    bad = [
        ({"name": "x", "command": ["a"], "constraints": {"min_ram_gib": -1}},
         "constraints.min_ram_gib: must not be negative"),
        ({"name": "x", "command": ["a"], "constraints": {"gpus": -2}},
         "constraints.gpus: must not be negative"),
        ({"name": "x", "command": ["a"], "constraints": {"allowed_hosts": ["gpu-[ab"]}},
         "constraints.allowed_hosts[0]: malformed glob"),
        ({"name": "x", "command": ["a"], "constraints": {"min_cpus": "lots"}},
         "constraints.min_cpus: expected a number"),
        ({"name": "x", "command": ["a"], "constraints": {"colour": "red"}},
         "constraints.colour: unknown key"),
        ({"name": "x", "command": ["a"], "max_attempts": 0}, "max_attempts: must be at least 1"),
        ({"name": "x", "command": "python train.py"}, "command: expected a non-empty list"),
        ({"name": "x"}, "blueprint: a run needs a blueprint or a command"),
        ({"name": "x", "blueprint": "nope"}, "blueprint: no blueprint named 'nope'"),
        ({"name": "", "command": ["a"]}, "name: expected"),
        ({"name": "x", "command": ["a"], "stall_after_s": 0}, "stall_after_s: expected a number"),
        ({"name": "x", "command": ["a"], "retry_on_exit_codes": ["1"]},
         "retry_on_exit_codes: expected a list of integers"),
        ({"name": "x", "command": ["a"], "statuss": "queued"}, "statuss: unknown field"),
    ]
    for req, message in bad:
        with pytest.raises(errors.ValidationError, match=message.replace("[", r"\[")):
            queue.submit(req)
    with pytest.raises(errors.ValidationError, match="unknown status 'runing'"):
        Status.parse("runing")
    with pytest.raises(errors.ValidationError, match=r"deny\[0\]: malformed glob '\[oops'"):
        models.HostPolicy.from_dict({"id": "h", "deny": ["[oops"]})
    assert queue.store.list_runs(RunFilter()) == []
    assert queue.store.list_host_policies() == []


_CRASH_SCRIPT = """
import os, sys
from runyard.store import open_store
from runyard.queue import Queue
q = Queue(open_store(sys.argv[1]))
for i in range(10_000):
    run, _ = q.submit({"name": f"r{i}", "command": ["true"]})
    print(run["id"], flush=True)
"""


def test_acknowledged_writes_survive_a_process_crash(db_url: str) -> None:
    proc = subprocess.Popen([sys.executable, "-c", _CRASH_SCRIPT, db_url],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    acked = []
    for line in proc.stdout:
        acked.append(line.strip())
        if len(acked) == 200:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    from runyard.store import open_store

    store = open_store(db_url, upgrade=False)
    ids = {r["id"] for r in store.list_runs(RunFilter(), limit=100_000, fields=["id"])}
    store.close()
    assert set(acked) <= ids
