"""``POST /v1/attempts/{id}/trainer-status``: Kubeflow Trainer's progress push
(docs/progress-protocol.md), with the attempt's own credential and no lease."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from ..support.app_server import AppServer
from ..support.server_api import Api, admin, error_of

KEP_BODY = {"trainerStatus": {
    "progressPercentage": 45, "estimatedRemainingSeconds": 795649,
    "metrics": [{"name": "loss", "value": "0.2347"}, {"name": "eval_loss", "value": "0.2451"},
                {"name": "currentEpoch", "value": "2"}, {"name": "totalEpochs", "value": "5"}],
    "lastUpdatedTime": "2025-01-23T10:30:45Z"}}


@pytest.fixture
def api(dialect_app: AppServer) -> Iterator[Api]:
    client = admin(dialect_app)
    yield client
    client.close()


def _claimed(api: Api, worker: Api, name: str) -> tuple[dict[str, Any], Api]:
    run = api.submit(name)
    got = worker.claim("box-1")
    assert got is not None and got["run"]["id"] == run["id"]
    return got, Api(api.server, got["attempt_token"])


def _url(got: dict[str, Any]) -> str:
    return f"/v1/attempts/{got['attempt']['id']}/trainer-status"


def _warnings(api: Api, run_id: str) -> list[str]:
    events = api.ok("GET", f"/v1/runs/{run_id}/events")["items"]
    return [e["details"]["message"] for e in events if e["kind"] == "warning"]


def test_a_trainer_status_becomes_the_runs_progress_and_metrics(api: Api) -> None:
    worker = Api(api.server, api.token("agent", "worker"))
    got, scoped = _claimed(api, worker, "kubeflow")
    run_id = got["run"]["id"]
    before = api.ok("GET", f"/v1/runs/{run_id}")
    # As Kubeflow's own example sends it: urllib's default Content-Type, a form type.
    r = scoped.post(_url(got), content=json.dumps(KEP_BODY).encode(),
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200, r.text
    assert r.json() == {"warnings": []}
    progress = api.ok("GET", f"/v1/runs/{run_id}/progress")
    snap = progress["snapshot"]
    assert (snap["percent"], snap["step"], snap["total_steps"]) == (45.0, 45, 100)
    assert (snap["epoch"], snap["total_epochs"]) == (2.0, 5.0)
    assert snap["metrics"] == {"loss": 0.2347, "eval_loss": 0.2451}
    assert progress["eta_seconds"] == 795649.0
    points = {p["tag"]: p for p in api.ok("GET", f"/v1/runs/{run_id}/metrics/tags")["items"]}
    assert set(points) == {"loss", "eval_loss"}
    assert (points["loss"]["last_step"], points["loss"]["last_value"]) == (45, 0.2347)
    # The push is the trainer's, not the supervisor's: it keeps no lease alive.
    after = api.ok("GET", f"/v1/runs/{run_id}")
    assert after["attempts"][-1]["lease_expires_at"] == \
        before["attempts"][-1]["lease_expires_at"] is not None

    # A value that is not a number: a warning event, once per attempt and name.
    body = {"trainerStatus": {"progressPercentage": 50, "metrics": [
        {"name": "loss", "value": "0.2"}, {"name": "ckpt", "value": "/ckpt/step-9"}]}}
    for _ in range(3):
        out = scoped.ok("POST", _url(got), json=body)
        assert len(out["warnings"]) == 1 and "'/ckpt/step-9'" in out["warnings"][0]
    warnings = _warnings(api, run_id)
    assert len(warnings) == 1 and "metric 'ckpt'" in warnings[0]
    assert api.ok("GET", f"/v1/runs/{run_id}/progress")["snapshot"]["step"] == 50
    # The run's own v1 steps stand when it reports them too.
    scoped.ok("POST", f"/v1/attempts/{got['attempt']['id']}/progress", json={
        "lease": got["lease"], "snapshot": {"schema": "runyard.progress/v1",
                                            "updated_at": "2026-01-01T00:00:00Z",
                                            "step": 1200, "total_steps": 5000}})
    scoped.ok("POST", _url(got), json={"trainerStatus": {"progressPercentage": 24}})
    snap = api.ok("GET", f"/v1/runs/{run_id}/progress")["snapshot"]
    assert (snap["step"], snap["total_steps"], snap["percent"]) == (1200, 5000, 24.0)
    for client in (worker, scoped):
        client.close()


BAD_BODIES = [
    ({}, "trainerStatus"),
    ({"trainerStatus": None}, "trainerStatus"),
    ({"trainerStatus": {"progressPercentage": 101}}, "trainerStatus.progressPercentage"),
    ({"trainerStatus": {"progressPercentage": -1}}, "trainerStatus.progressPercentage"),
    ({"trainerStatus": {"progressPercentage": "45"}}, "trainerStatus.progressPercentage"),
    ({"trainerStatus": {"progressPercentage": True}}, "trainerStatus.progressPercentage"),
    ({"trainerStatus": {"estimatedRemainingSeconds": -5}},
     "trainerStatus.estimatedRemainingSeconds"),
    ({"trainerStatus": {"metrics": {"loss": "1"}}}, "trainerStatus.metrics"),
    ({"trainerStatus": {"metrics": [{"name": "", "value": "1"}]}},
     "trainerStatus.metrics[0].name"),
    ({"trainerStatus": {"metrics": [{"name": "x" * 65, "value": "1"}]}},
     "trainerStatus.metrics[0].name"),
    ({"trainerStatus": {"metrics": [{"name": "loss"}]}}, "trainerStatus.metrics[0].value"),
    ({"trainerStatus": {"metrics": [{"name": "loss", "value": {"a": 1}}]}},
     "trainerStatus.metrics[0].value"),
    ({"trainerStatus": {"metrics": [{"name": "loss", "value": "1", "unit": "s"}]}},
     "trainerStatus.metrics[0].unit"),
    ({"trainerStatus": {"metrics": [{"name": f"m{i}", "value": "1"} for i in range(257)]}},
     "trainerStatus.metrics"),
    ({"trainerStatus": {"lastUpdatedTime": "yesterday"}}, "trainerStatus.lastUpdatedTime"),
    ({"trainerStatus": {"lastUpdatedTime": "99999999999999"}},
     "trainerStatus.lastUpdatedTime"),
    # Invalid Unicode is found as the body is parsed; the message names where.
    ({"trainerStatus": {"metrics": [{"name": "\ud800", "value": "1"}]}}, "body"),
    ({"trainerStatus": {}, "dataInitializerStatus": {}}, "dataInitializerStatus"),
    ([1, 2], "body"),
]


def test_bad_bodies_are_refused_naming_the_field_and_nothing_is_stored(api: Api) -> None:
    worker = Api(api.server, api.token("agent", "worker"))
    got, scoped = _claimed(api, worker, "bad")
    run_id = got["run"]["id"]
    for body, field in BAD_BODIES:
        data = json.dumps(body).encode()
        r = scoped.post(_url(got), content=data, headers={"Content-Type": "application/json"})
        assert r.status_code == 422, (body, r.text)
        assert error_of(r)["field"].startswith(field), (body, error_of(r))
    r = scoped.post(_url(got), content=b"{not json")
    assert r.status_code == 422 and error_of(r)["field"] == "body"
    r = scoped.post(_url(got), content=b'{"trainerStatus": {"metrics": [{"name": "l", '
                                       b'"value": "' + b"x" * 300_000 + b'"}]}}')
    assert r.status_code == 413, r.text
    assert api.ok("GET", f"/v1/runs/{run_id}/progress")["snapshot"] is None
    assert api.ok("GET", f"/v1/runs/{run_id}/metrics/tags")["items"] == []
    assert _warnings(api, run_id) == []
    for client in (worker, scoped):
        client.close()


def test_who_may_post_and_for_which_attempt(api: Api) -> None:
    worker_token = api.token("agent", "worker")
    worker = Api(api.server, worker_token)
    mine, scoped = _claimed(api, worker, "mine")
    other, other_scoped = _claimed(api, worker, "other")
    body = {"trainerStatus": {"progressPercentage": 10}}
    # No credential, or a wrong one: 401.
    for secret in (None, "rya_" + "x" * 43, "ry_" + "y" * 43):
        anon = Api(api.server, secret)
        r = anon.post(_url(mine), body)
        assert r.status_code == 401 and error_of(r)["type"] == "AuthError", r.text
        anon.close()
    # Tokens of other roles, the worker's included (it holds the lease, not this right): 403.
    for role in ("viewer", "user", "worker"):
        client = worker if role == "worker" else Api(api.server, api.token(f"t-{role}", role))
        r = client.post(_url(mine), body)
        assert r.status_code == 403 and error_of(r)["type"] == "Forbidden", (role, r.text)
    # Another attempt's credential: 403, and that attempt's run is untouched.
    r = other_scoped.post(_url(mine), body)
    assert r.status_code == 403 and "may not act on attempt" in error_of(r)["message"]
    assert api.ok("GET", f"/v1/runs/{mine['run']['id']}/progress")["snapshot"] is None
    # An attempt that does not exist: 404 for an operator (a credential is its own).
    r = api.post("/v1/attempts/0190000000000bbbbbbbbbb/trainer-status", body)
    assert r.status_code == 404
    # The operator may post for any active attempt.
    api.ok("POST", _url(other), json=body)
    # Ended attempts: the credential died with it (401); for an operator it is a 409.
    scoped.ok("POST", f"/v1/attempts/{mine['attempt']['id']}/complete",
              json={"lease": mine["lease"], "exit_code": 0})
    r = scoped.post(_url(mine), body)
    assert r.status_code == 401 and error_of(r)["type"] == "AuthError"
    r = api.post(_url(mine), body)
    assert r.status_code == 409 and error_of(r)["type"] == "LeaseConflict", r.text
    api.ok("POST", f"/v1/runs/{other['run']['id']}/cancel", json={})
    assert other_scoped.post(_url(other), body).status_code == 401
    for client in (worker, scoped, other_scoped):
        client.close()
