"""Asking a running loop for a checkpoint: the queue on both dialects (request, heartbeat,
the registered checkpoint that answers it, refusals), and the HTTP action through the app."""

from __future__ import annotations

from typing import Any

import pytest

from runyard import errors
from runyard.queue import Queue

from ..support.factories import caps, submit
from ..support.server_api import Api, admin, error_of


def _running(queue: Queue, name: str = "job") -> tuple[dict[str, Any], Any]:
    queue.fleet.register(caps("w1", slots=4))
    run = submit(queue, name)
    claim = queue.claim("w1")
    assert claim is not None and claim.run["id"] == run["id"]
    queue.heartbeat(claim.attempt_id, claim.lease, running=True)
    return run, claim


def _kinds(queue: Queue, run_id: str) -> list[str]:
    return [e["kind"] for e in queue.store.list_events(run_id, limit=1000)]


def test_request_heartbeat_and_the_checkpoint_that_answers_it(queue: Queue) -> None:
    run, claim = _running(queue)
    assert queue.heartbeat(claim.attempt_id, claim.lease).checkpoint is False
    asked = queue.request_checkpoint(run["id"], actor="alice", details={"rule": "flat"})
    when = asked["checkpoint_requested_at"]
    assert asked["status"] == "running" and when is not None
    # Asking again while it is pending changes nothing: no second event, the same time.
    again = queue.request_checkpoint(run["id"], actor="bob")
    assert again["checkpoint_requested_at"] == when
    assert _kinds(queue, run["id"]).count("checkpoint_requested") == 1
    ev = queue.store.list_events(run["id"], limit=1000)[-1]
    assert ev["actor"] == "alice" and ev["details"] == {"rule": "flat", "attempt": 1}
    # Every heartbeat says so, with the request's time as its name, until it is answered.
    for _ in range(2):
        order = queue.heartbeat(claim.attempt_id, claim.lease, running=True)
        assert order.checkpoint and order.checkpoint_requested_at == when and not order.stop
    queue.store.add_checkpoint(run["id"], 1, 40, "incomplete")
    seq = queue.checkpoint_recorded(run["id"], 1, {"step": 40, "status": "incomplete"},
                                    actor="w1")
    assert queue.store.get_run(run["id"])["checkpoint_requested_at"] is None
    ev = queue.store.list_events(run["id"], limit=1000)[-1]
    assert ev["seq"] == seq and ev["kind"] == "checkpoint"
    assert ev["details"] == {"step": 40, "status": "incomplete", "answers_request": True}
    order = queue.heartbeat(claim.attempt_id, claim.lease)
    assert not order.checkpoint and order.checkpoint_requested_at is None
    # A checkpoint with nothing pending answers nothing; a new request is a new one.
    queue.checkpoint_recorded(run["id"], 1, {"step": 41}, actor="w1")
    assert "answers_request" not in queue.store.list_events(run["id"], limit=1000)[-1]["details"]
    later = queue.request_checkpoint(run["id"], actor="alice")["checkpoint_requested_at"]
    assert later is not None and later >= when
    assert _kinds(queue, run["id"]).count("checkpoint_requested") == 2


def test_the_request_ends_with_its_attempt(queue: Queue) -> None:
    run, claim = _running(queue)
    queue.request_checkpoint(run["id"], actor="alice")
    stopping = queue.stop(run["id"], grace_s=5, actor="alice")
    assert stopping["checkpoint_requested_at"] is not None  # the loop may still save one
    order = queue.heartbeat(claim.attempt_id, claim.lease)
    assert order.stop and order.checkpoint
    ended = queue.fail(claim.attempt_id, claim.lease, reason="stopped")
    assert ended["status"] == "stopped" and ended["checkpoint_requested_at"] is None


def test_a_late_checkpoint_of_an_older_attempt_does_not_answer(queue: Queue) -> None:
    run, claim = _running(queue)
    queue.fail(claim.attempt_id, claim.lease, reason="lost")  # requeued (max_attempts 3)
    second = queue.claim("w1")
    assert second is not None and second.attempt == 2
    queue.heartbeat(second.attempt_id, second.lease, running=True)
    queue.request_checkpoint(run["id"], actor="alice")
    queue.checkpoint_recorded(run["id"], 1, {"step": 3}, actor="w1")
    assert queue.heartbeat(second.attempt_id, second.lease).checkpoint
    queue.checkpoint_recorded(run["id"], 2, {"step": 4}, actor="w1")
    assert not queue.heartbeat(second.attempt_id, second.lease).checkpoint


def test_only_running_runs_take_a_request(queue: Queue) -> None:
    queue.fleet.register(caps("w1"))
    queued = submit(queue, "waiting")
    with pytest.raises(errors.Conflict) as info:
        queue.request_checkpoint(queued["id"], actor="alice")
    assert "is queued" in info.value.message and "has not started yet" in info.value.message
    claim = queue.claim("w1")
    assert claim is not None
    with pytest.raises(errors.Conflict, match="is claimed"):
        queue.request_checkpoint(queued["id"], actor="alice")
    queue.heartbeat(claim.attempt_id, claim.lease, running=True)
    queue.stop(queued["id"], grace_s=5)
    with pytest.raises(errors.Conflict, match="it is stopping"):
        queue.request_checkpoint(queued["id"], actor="alice")
    queue.fail(claim.attempt_id, claim.lease, reason="stopped")
    with pytest.raises(errors.Conflict, match="is stopped.*it has ended"):
        queue.request_checkpoint(queued["id"], actor="alice")
    with pytest.raises(errors.NotFound):
        queue.request_checkpoint("0190000000000nobody00000", actor="alice")
    assert "checkpoint_requested" not in _kinds(queue, queued["id"])


# --------------------------------------------------------------------------- HTTP


@pytest.fixture
def api(app_server):  # type: ignore[no-untyped-def]
    client = admin(app_server)
    yield client
    client.close()


def test_http_request_heartbeat_and_registered_checkpoint(api: Api, app_server) -> None:  # type: ignore[no-untyped-def]
    alice = Api(app_server, api.token("alice", "user"))
    bob = Api(app_server, api.token("bob", "user"))
    run = alice.submit("mine")
    r = alice.post(f"/v1/runs/{run['id']}/checkpoint", {})
    assert r.status_code == 409
    err = error_of(r)
    assert err["type"] == "Conflict" and "is queued" in err["message"]
    claim = api.claim()
    assert claim is not None
    aid, lease = claim["attempt"]["id"], claim["lease"]
    beat = api.ok("POST", f"/v1/attempts/{aid}/heartbeat", json={"lease": lease,
                                                                   "running": True})
    assert beat["checkpoint"] is False and beat["checkpoint_requested_at"] is None
    r = bob.post(f"/v1/runs/{run['id']}/checkpoint", {})
    assert r.status_code == 403 and "belongs to 'alice'" in error_of(r)["message"]
    r = alice.post(f"/v1/runs/{run['id']}/checkpoint", {"step": 5})
    assert r.status_code == 422 and error_of(r)["field"] == "step"  # nothing stored
    assert api.ok("GET", f"/v1/runs/{run['id']}")["checkpoint_requested_at"] is None
    out = alice.ok("POST", f"/v1/runs/{run['id']}/checkpoint", json={})
    assert out["status"] == "running" and out["checkpoint_requested_at"].endswith("Z")
    assert alice.ok("POST", f"/v1/runs/{run['id']}/checkpoint")["checkpoint_requested_at"] \
        == out["checkpoint_requested_at"]  # no body works too; still the same request
    beat = api.ok("POST", f"/v1/attempts/{aid}/heartbeat", json={"lease": lease})
    assert beat["checkpoint"] is True and beat["stop"] is False
    assert beat["checkpoint_requested_at"] == out["checkpoint_requested_at"]
    api.ok("POST", f"/v1/attempts/{aid}/checkpoints", 201,
           json={"lease": lease, "step": 12, "status": "incomplete"})
    beat = api.ok("POST", f"/v1/attempts/{aid}/heartbeat", json={"lease": lease})
    assert beat["checkpoint"] is False and beat["checkpoint_requested_at"] is None
    events = api.ok("GET", f"/v1/runs/{run['id']}/events")["items"]
    asked = [e for e in events if e["kind"] == "checkpoint_requested"]
    assert len(asked) == 1 and asked[0]["actor"] == "alice"
    assert events[-1]["kind"] == "checkpoint" and events[-1]["details"]["answers_request"]
    api.ok("POST", f"/v1/attempts/{aid}/complete", json={"lease": lease})
    r = alice.post(f"/v1/runs/{run['id']}/checkpoint", {})
    assert r.status_code == 409 and "it has ended" in error_of(r)["message"]
    assert api.post("/v1/runs/0190000000000nobody00000/checkpoint", {}).status_code == 404
    alice.close()
    bob.close()
