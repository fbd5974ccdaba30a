"""Every branch of the retry policy, as a pure function and through a real queue."""

from __future__ import annotations

from typing import Any

import pytest

from runyard import errors
from runyard.models import Reason, Status
from runyard.queue import Queue
from runyard.retry import decide

from ..support.factories import caps, submit


def _run(**kw: Any) -> dict[str, Any]:
    base = {"attempt": 1, "budget_start": 0, "max_attempts": 3, "max_restarts_on_errors": 0,
            "error_restarts": 0, "retry_on_exit_codes": [], "no_retry": False,
            "stop_intent": None}
    return {**base, **kw}


@pytest.mark.parametrize(("run", "reason", "code", "ack", "status", "requeue"), [
    (_run(), Reason.COMPLETED, 0, False, Status.COMPLETED, False),
    (_run(), Reason.LOST, None, False, Status.QUEUED, True),
    (_run(), Reason.WORKER_SHUTDOWN, None, False, Status.QUEUED, True),
    (_run(), Reason.PREEMPTED, None, False, Status.QUEUED, True),
    (_run(attempt=3), Reason.LOST, None, False, Status.FAILED, False),
    (_run(attempt=3, budget_start=2), Reason.LOST, None, False, Status.QUEUED, True),
    (_run(no_retry=True), Reason.LOST, None, False, Status.FAILED, False),
    (_run(), Reason.USER_ERROR, 1, False, Status.FAILED, False),
    (_run(), Reason.SETUP_ERROR, None, False, Status.FAILED, False),
    (_run(retry_on_exit_codes=[75]), Reason.USER_ERROR, 75, False, Status.QUEUED, True),
    (_run(retry_on_exit_codes=[75]), Reason.USER_ERROR, 1, False, Status.FAILED, False),
    (_run(retry_on_exit_codes=[75], attempt=3), Reason.USER_ERROR, 75, False, Status.FAILED,
     False),
    (_run(max_restarts_on_errors=1), Reason.USER_ERROR, 1, False, Status.QUEUED, True),
    (_run(max_restarts_on_errors=1, error_restarts=1), Reason.USER_ERROR, 1, False,
     Status.FAILED, False),
    (_run(max_restarts_on_errors=5, no_retry=True), Reason.USER_ERROR, 1, False,
     Status.FAILED, False),
    (_run(stop_intent="stop"), Reason.USER_ERROR, -15, True, Status.STOPPED, False),
    (_run(stop_intent="stop"), Reason.LOST, None, True, Status.STOPPED, False),
    (_run(stop_intent="stop"), Reason.COMPLETED, 0, True, Status.STOPPED, False),
    (_run(stop_intent="stop"), Reason.COMPLETED, 0, False, Status.COMPLETED, False),
    (_run(stop_intent="preempt"), Reason.COMPLETED, 0, True, Status.QUEUED, True),
    (_run(stop_intent="preempt"), Reason.COMPLETED, 0, False, Status.COMPLETED, False),
    (_run(stop_intent="preempt"), Reason.USER_ERROR, 143, True, Status.QUEUED, True),
    (_run(stop_intent="preempt", attempt=3), Reason.COMPLETED, 0, True, Status.FAILED, False),
    (_run(stop_intent="restart"), Reason.USER_ERROR, 143, True, Status.QUEUED, True),
    (_run(stop_intent="rule"), Reason.USER_ERROR, 143, True, Status.STOPPED, False),
    (_run(stop_intent="rule", max_restarts_on_errors=3), Reason.USER_ERROR, 143, True,
     Status.STOPPED, False),
    (_run(stop_intent="rule"), Reason.COMPLETED, 0, False, Status.COMPLETED, False),
    (_run(stop_intent="fail"), Reason.COMPLETED, 0, True, Status.FAILED, False),
    (_run(stop_intent="fail", max_restarts_on_errors=3), Reason.USER_ERROR, 143, True,
     Status.FAILED, False),
    (_run(), Reason.RULE, None, False, Status.STOPPED, False),
    (_run(), Reason.STOPPED, 0, False, Status.STOPPED, False),
])
def test_decide(run: dict[str, Any], reason: Reason, code: int | None, ack: bool,
                status: Status, requeue: bool) -> None:
    d = decide(run, reason, code, stop_acknowledged=ack)
    assert (d.status, d.requeue) == (status, requeue), d.why


def _attempt(q: Queue, host: str = "w"):  # type: ignore[no-untyped-def]
    c = q.claim(host)
    assert c is not None
    q.heartbeat(c.attempt_id, c.lease, running=True)
    return c


def test_lost_requeues_until_max_attempts(queue: Queue) -> None:
    queue.fleet.register(caps("w"))
    run = submit(queue, max_attempts=2)
    c1 = _attempt(queue)
    assert queue.fail(c1.attempt_id, c1.lease, reason="lost")["status"] == "queued"
    c2 = _attempt(queue)
    assert c2.attempt == 2
    out = queue.fail(c2.attempt_id, c2.lease, reason="worker_shutdown")
    assert out["status"] == "failed" and out["termination_reason"] == "worker_shutdown"
    details = queue.store.list_events(run["id"])[-1]["details"]
    assert details["decision"] == "worker_shutdown: max_attempts (2) reached"


def test_user_error_keeps_exit_code_and_stderr(queue: Queue) -> None:
    queue.fleet.register(caps("w"))
    run = submit(queue)
    c = _attempt(queue)
    out = queue.fail(c.attempt_id, c.lease, reason="user_error", exit_code=3,
                     stderr_tail=["Traceback...", "ValueError: boom"])
    assert out["status"] == "failed" and out["exit_code"] == 3
    last = queue.store.list_events(run["id"])[-1]
    assert last["details"]["stderr_tail"] == ["Traceback...", "ValueError: boom"]
    assert last["details"]["exit_code"] == 3 and last["details"]["worker"] == "w"


def test_retry_on_exit_codes_and_error_restarts(queue: Queue) -> None:
    queue.fleet.register(caps("w"))
    submit(queue, retry_on_exit_codes=[75], max_restarts_on_errors=1, max_attempts=5)
    c = _attempt(queue)
    assert queue.fail(c.attempt_id, c.lease, reason="user_error", exit_code=75)[
        "status"] == "queued"
    c = _attempt(queue)
    assert queue.fail(c.attempt_id, c.lease, reason="user_error", exit_code=1)[
        "status"] == "queued"  # uses the one error restart
    c = _attempt(queue)
    out = queue.fail(c.attempt_id, c.lease, reason="user_error", exit_code=1)
    assert out["status"] == "failed" and out["error_restarts"] == 1


def test_no_retry_flag_from_a_log_rule(queue: Queue) -> None:
    queue.fleet.register(caps("w"))
    submit(queue, max_restarts_on_errors=3)
    c = _attempt(queue)
    out = queue.fail(c.attempt_id, c.lease, reason="user_error", exit_code=1, no_retry=True,
                     details={"rule": "CUDA out of memory"})
    assert out["status"] == "failed" and out["no_retry"] is True


def test_preempted_then_exit_zero_requeues(queue: Queue) -> None:
    queue.fleet.register(caps("w"))
    run = submit(queue)
    c = _attempt(queue)
    queue.preempt(run["id"], grace_s=30)
    order = queue.heartbeat(c.attempt_id, c.lease)  # the worker acknowledges the preemption
    assert order.stop and order.intent == "preempt"
    out = queue.complete(c.attempt_id, c.lease)
    assert out["status"] == "queued" and out["termination_reason"] == "preempted"
    c2 = _attempt(queue)
    assert c2.attempt == 2 and queue.complete(c2.attempt_id, c2.lease)["status"] == "completed"


def test_setup_error_fails(queue: Queue) -> None:
    queue.fleet.register(caps("w"))
    submit(queue)
    c = _attempt(queue)
    out = queue.fail(c.attempt_id, c.lease, reason="setup_error",
                     details={"error": "python3.99: not found"})
    assert out["status"] == "failed" and out["termination_reason"] == "setup_error"


def test_unknown_reason_is_refused(queue: Queue) -> None:
    queue.fleet.register(caps("w"))
    submit(queue)
    c = _attempt(queue)
    with pytest.raises(errors.ValidationError, match="unknown termination reason 'oops'"):
        queue.fail(c.attempt_id, c.lease, reason="oops")
    with pytest.raises(errors.ValidationError, match="use complete"):
        queue.fail(c.attempt_id, c.lease, reason="completed")
    assert queue.store.get_attempt(c.attempt_id)["active"] is True
