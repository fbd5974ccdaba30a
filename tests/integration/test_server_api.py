"""The runs and worker endpoints over HTTP against a real server process."""

from __future__ import annotations

import time

import pytest

from ..support.server_api import Api, admin, caps, error_of


@pytest.fixture
def api(app_server):  # type: ignore[no-untyped-def]
    client = admin(app_server)
    yield client
    client.close()


@pytest.fixture(scope="module")
def shared(shared_app):  # type: ignore[no-untyped-def]
    """The module-wide app, for tests that only send bad input (they change nothing)."""
    client = admin(shared_app)
    yield client
    client.close()


def test_health_needs_no_token(app_server) -> None:  # type: ignore[no-untyped-def]
    anon = Api(app_server, None)
    body = anon.ok("GET", "/v1/health")
    assert body["status"] == "ok" and body["database"] is True
    assert anon.get("/v1/runs").status_code == 401
    assert error_of(anon.get("/v1/runs"))["type"] == "AuthError"
    assert Api(app_server, "ry_wrong_secret_0123456789").get("/v1/runs").status_code == 401


def test_submit_read_list_and_times_are_iso(api: Api) -> None:
    run = api.submit("mlp-small", project="demo", config={"lr": 0.01},
                     constraints={"min_ram_gib": 1})
    assert run["status"] == "queued" and run["owner"] == "admin"
    assert run["created_at"].endswith("Z") and "T" in run["created_at"]
    assert "event_seq" not in run
    got = api.ok("GET", f"/v1/runs/{run['id']}")
    assert got["id"] == run["id"] and got["progress"] is None and got["attempts"] == []
    assert "no worker is registered" in got["explain"]["summary"]
    api.submit("other", project="x")
    page = api.ok("GET", "/v1/runs", params={"project": "demo"})
    assert [r["id"] for r in page["items"]] == [run["id"]] and page["next_after_id"] is None
    page = api.ok("GET", "/v1/runs", params={"limit": 1, "fields": "id,name"})
    assert len(page["items"]) == 1 and set(page["items"][0]) == {"id", "name"}
    rest = api.ok("GET", "/v1/runs", params={"limit": 1, "after_id": page["next_after_id"]})
    assert rest["items"][0]["id"] != page["items"][0]["id"]
    assert api.ok("GET", "/v1/runs", params={"name_like": "MLP-%"})["items"][0]["id"] == run["id"]
    assert api.ok("GET", "/v1/runs", params={"status": "running,completed"})["items"] == []
    assert len(api.ok("GET", "/v1/runs", params={"created_after": "2000-01-01T00:00:00Z"})
               ["items"]) == 2
    assert api.ok("GET", "/v1/runs", params={"created_before": "2000-01-01T00:00:00Z"}
                  )["items"] == []


@pytest.mark.parametrize("body, field", [
    ({"name": "x", "command": ["a"], "bogus": 1}, "bogus"),
    ({"command": ["a"]}, "name"),
    ({"name": "x", "command": "python train.py"}, "command"),
    ({"name": "x", "command": ["a"], "priority": "high"}, "priority"),
    ({"name": "x", "command": ["a"], "constraints": {"gpus": -1}}, "constraints.gpus"),
    ({"name": "x", "command": ["a"], "constraints": {"vram": 1}}, "constraints.vram"),
    ({"name": "x", "blueprint": "nope"}, "blueprint"),
    ({"name": "x"}, "blueprint"),
    ({"name": "../x", "command": ["a"]}, "name"),
    ({"name": "x", "command": ["a"], "executor": "k8s"}, "executor"),
])
def test_bad_run_bodies_name_the_field(shared: Api, body: dict, field: str) -> None:  # type: ignore[type-arg]
    r = shared.post("/v1/runs", body)
    assert r.status_code == 422, r.text
    assert error_of(r)["field"] == field


@pytest.mark.parametrize("params, field", [
    ({"status": "sleeping"}, "status"), ({"limit": 0}, "limit"), ({"sort": "-secret"}, "sort"),
    ({"fields": "id,lease"}, "fields"), ({"created_after": "yesterday"}, "created_after"),
    ({"after_id": "nope"}, "after_id"),
])
def test_bad_list_params(shared: Api, params: dict, field: str) -> None:  # type: ignore[type-arg]
    r = shared.get("/v1/runs", params=params)
    assert r.status_code == 422 and error_of(r)["field"] == field


def test_not_json_and_unknown_paths(shared: Api) -> None:
    r = shared.request("POST", "/v1/runs", content=b"{not json",
                       headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert shared.get("/v1/runs/nope").status_code == 404
    assert error_of(shared.get("/v1/runs/nope"))["type"] == "NotFound"
    assert shared.get("/v1/nothing").status_code == 404


def test_worker_lifecycle_and_fencing(api: Api) -> None:
    run = api.submit("train", env={"A": "1"}, config={"lr": 0.1})
    claim = api.claim("box-1")
    assert claim is not None
    assert claim["run"]["id"] == run["id"] and claim["command"] == ["python", "-c", "print(1)"]
    assert claim["env"] == {"A": "1"} and claim["config"] == {"lr": 0.1}
    assert claim["attempt"]["number"] == 1 and claim["lease_expires_at"].endswith("Z")
    assert api.claim("box-1") is None  # nothing else queued: 204
    aid, lease = claim["attempt"]["id"], claim["lease"]
    beat = api.ok("POST", f"/v1/attempts/{aid}/heartbeat", json={"lease": lease, "running": True})
    assert beat["stop"] is False and beat["intent"] is None
    assert api.ok("GET", f"/v1/runs/{run['id']}")["status"] == "running"
    # A foreign lease is fenced off: 409 and nothing changes.
    for path, body in [("heartbeat", {"lease": "x" * 32}),
                       ("complete", {"lease": "x" * 32, "exit_code": 0}),
                       ("fail", {"lease": "x" * 32, "reason": "user_error"}),
                       ("progress", {"lease": "x" * 32, "snapshot": None})]:
        r = api.post(f"/v1/attempts/{aid}/{path}", body)
        assert r.status_code == 409, (path, r.text)
        assert error_of(r)["type"] == "LeaseConflict"
    assert api.ok("GET", f"/v1/runs/{run['id']}")["status"] == "running"
    done = api.ok("POST", f"/v1/attempts/{aid}/complete", json={"lease": lease, "exit_code": 0})
    assert done["status"] == "completed"
    # The old lease is now stale.
    r = api.post(f"/v1/attempts/{aid}/heartbeat", {"lease": lease})
    assert r.status_code == 409
    events = api.ok("GET", f"/v1/runs/{run['id']}/events")
    assert [e["status"] for e in events["items"]] == ["queued", "claimed", "running", "completed"]
    assert [e["seq"] for e in events["items"]] == [1, 2, 3, 4]
    assert events["next_after_seq"] == 4 and events["items"][0]["actor"] == "admin"
    tail = api.ok("GET", f"/v1/runs/{run['id']}/events", params={"after_seq": 3})
    assert [e["seq"] for e in tail["items"]] == [4]
    desc = api.ok("GET", f"/v1/runs/{run['id']}/events", params={"order": "desc", "limit": 2})
    assert [e["seq"] for e in desc["items"]] == [4, 3]


def test_fail_stop_restart_cancel_requeue_delete(api: Api) -> None:
    run = api.submit("flaky", max_attempts=1)
    claim = api.claim()
    assert claim
    failed = api.ok("POST", f"/v1/attempts/{claim['attempt']['id']}/fail",
                    json={"lease": claim["lease"], "reason": "user_error", "exit_code": 3,
                          "stderr_tail": ["Traceback", "ValueError: boom"]})
    assert failed["status"] == "failed" and failed["exit_code"] == 3
    ev = api.ok("GET", f"/v1/runs/{run['id']}/events", params={"order": "desc", "limit": 1})
    assert ev["items"][0]["details"]["stderr_tail"][-1] == "ValueError: boom"
    r = api.post(f"/v1/runs/{run['id']}/cancel", {})
    assert r.status_code == 409 and "failed" in error_of(r)["message"]
    assert api.ok("POST", f"/v1/runs/{run['id']}/requeue", json={})["status"] == "queued"
    claim = api.claim()
    assert claim and claim["attempt"]["number"] == 2
    stopping = api.ok("POST", f"/v1/runs/{run['id']}/stop", json={"grace_seconds": 5})
    assert stopping["status"] == "stopping"
    beat = api.ok("POST", f"/v1/attempts/{claim['attempt']['id']}/heartbeat",
                  json={"lease": claim["lease"]})
    assert beat["stop"] is True and beat["intent"] == "stop" and 0 <= beat["grace_s"] <= 5
    r = api.request("DELETE", f"/v1/runs/{run['id']}")
    assert r.status_code == 409  # still active
    api.ok("POST", f"/v1/attempts/{claim['attempt']['id']}/fail",
           json={"lease": claim["lease"], "reason": "stopped"})
    assert api.ok("GET", f"/v1/runs/{run['id']}")["status"] == "stopped"
    restarted = api.ok("POST", f"/v1/runs/{run['id']}/restart",
                       json={"resources": {"min_ram_gib": 2}})
    assert restarted["status"] == "queued" and restarted["constraints"]["min_ram_gib"] == 2
    r = api.post(f"/v1/runs/{run['id']}/restart", {"resources": {"ram": 2}})
    assert r.status_code == 422 and error_of(r)["field"] == "constraints.ram"
    assert api.ok("POST", f"/v1/runs/{run['id']}/cancel", json={})["status"] == "cancelled"
    assert api.request("DELETE", f"/v1/runs/{run['id']}").status_code == 204
    assert api.get(f"/v1/runs/{run['id']}").status_code == 404
    r = api.post(f"/v1/runs/{run['id']}/stop", {"grace_seconds": -1})
    assert r.status_code == 422 and error_of(r)["field"] == "grace_seconds"


def test_local_run_held_by_its_user(api: Api) -> None:
    alice = Api(api.server, api.token("alice", "user"))
    out = alice.ok("POST", "/v1/runs", 201, json={"name": "notebook", "executor": "local",
                                                  "host_id": "laptop"})
    assert out["run"]["status"] == "running" and out["run"]["owner"] == "alice"
    aid, lease = out["attempt"]["id"], out["lease"]
    alice.ok("POST", f"/v1/attempts/{aid}/heartbeat", json={"lease": lease})
    alice.ok("POST", f"/v1/runs/{out['run']['id']}/metrics",
             json={"attempt_id": aid, "lease": lease,
                   "points": [{"step": 1, "tag": "loss", "value": 0.5}]})
    bob = Api(api.server, api.token("bob", "user"))
    r = bob.post(f"/v1/attempts/{aid}/heartbeat", {"lease": lease})
    assert r.status_code == 403 and error_of(r)["type"] == "Forbidden"
    assert bob.post(f"/v1/runs/{out['run']['id']}/stop", {}).status_code == 403
    done = alice.ok("POST", f"/v1/attempts/{aid}/complete", json={"lease": lease})
    assert done["status"] == "completed"


def test_restart_records_a_stopped_attempt_and_refuses_a_local_run(api: Api) -> None:
    run = api.submit("restarted")
    claim = api.claim()
    assert claim
    aid, lease = claim["attempt"]["id"], claim["lease"]
    api.ok("POST", f"/v1/attempts/{aid}/heartbeat", json={"lease": lease, "running": True})
    api.ok("POST", f"/v1/runs/{run['id']}/restart", json={})
    out = api.ok("POST", f"/v1/attempts/{aid}/complete", json={"lease": lease})
    assert out["status"] == "queued" and out["termination_reason"] == "stopped"

    local = api.ok("POST", "/v1/runs", 201, json={"name": "notebook", "executor": "local",
                                                  "host_id": "laptop"})
    api.ok("POST", f"/v1/attempts/{local['attempt']['id']}/fail",
           json={"lease": local["lease"], "reason": "user_error", "exit_code": 1})
    for action in ("restart", "requeue"):
        r = api.post(f"/v1/runs/{local['run']['id']}/{action}", {})
        assert r.status_code == 409, r.text
        assert error_of(r)["type"] == "NotSchedulable"
        assert "only the process that started it can run it" in error_of(r)["message"]
    assert api.ok("GET", f"/v1/runs/{local['run']['id']}")["status"] == "failed"


def test_progress_eta_warnings_and_bounds(api: Api) -> None:
    run = api.submit("p")
    claim = api.claim()
    assert claim
    aid, lease = claim["attempt"]["id"], claim["lease"]
    for step in (100, 200):
        api.ok("POST", f"/v1/attempts/{aid}/progress", json={
            "lease": lease, "snapshot": {"schema": "runyard.progress/v1", "step": step,
                                         "total_steps": 1000, "updated_at": "2026-01-01T00:00Z",
                                         "metrics": {"loss": "NaN"}}})
        time.sleep(0.3)
    prog = api.ok("GET", f"/v1/runs/{run['id']}/progress")
    assert prog["snapshot"]["step"] == 200 and prog["stalled"] is False
    # ~100 steps per 0.3 s: about 2.4 s for the remaining 800 steps.
    assert prog["eta_seconds"] is not None and 0 < prog["eta_seconds"] < 30
    assert prog["progress_updated_at"].endswith("Z")
    detail = api.ok("GET", f"/v1/runs/{run['id']}")
    assert detail["progress"]["step"] == 200 and "eta_seconds" in detail["progress"]
    api.ok("POST", f"/v1/attempts/{aid}/progress", json={
        "lease": lease, "snapshot": {"schema": "runyard.progress/v1", "eta_seconds": 42,
                                     "metrics": {f"m{i}": i for i in range(300)}},
        "warnings": ["progress file was partial"]})
    assert api.ok("GET", f"/v1/runs/{run['id']}/progress")["snapshot"]["step"] == 200
    warnings = [e["details"]["message"] for e in
                api.ok("GET", f"/v1/runs/{run['id']}/events")["items"] if e["kind"] == "warning"]
    assert warnings[0] == "progress file was partial"
    assert "300 metrics" in warnings[1]
    api.ok("POST", f"/v1/attempts/{aid}/progress", json={
        "lease": lease, "snapshot": {"schema": "runyard.progress/v1", "eta_seconds": 42}})
    assert api.ok("GET", f"/v1/runs/{run['id']}/progress")["eta_seconds"] == 42


def test_claim_body_checks_and_workers(api: Api) -> None:
    r = api.post("/v1/workers/claim", {"host_id": "a", "capabilities": caps("b")})
    assert r.status_code == 422 and error_of(r)["field"] == "capabilities.host_id"
    r = api.post("/v1/workers/claim", {"host_id": "a", "capabilities": {"cpus": "many"}})
    assert r.status_code == 422 and error_of(r)["field"] == "capabilities.cpus"
    api.submit("w")
    assert api.claim("gpu-box", gpus=[{"index": 0, "name": "A100", "vram_gib": 80}])
    workers = api.ok("GET", "/v1/workers")["items"]
    assert [w["host_id"] for w in workers] == ["gpu-box"]
    assert workers[0]["alive"] and workers[0]["active_attempts"] == 1
    assert workers[0]["current"][0]["status"] == "claimed"
    assert api.ok("POST", "/v1/workers/gpu-box/drain")["drained"] is True
    api.submit("w2")
    assert api.claim("gpu-box") is None
    assert api.ok("POST", "/v1/workers/gpu-box/resume")["drained"] is False
    assert api.claim("gpu-box") is not None
    assert api.post("/v1/workers/ghost/drain").status_code == 404


def test_explain_and_validate(api: Api) -> None:
    api.claim("cpu-box")
    run = api.submit("big", constraints={"require_cuda": True})
    why = api.ok("GET", f"/v1/runs/{run['id']}/explain")
    assert why["summary"] == "no registered worker can ever serve this run"
    assert why["workers"][0]["host_id"] == "cpu-box" and why["workers"][0]["unmet"]
    api.ok("POST", "/v1/blueprints", 201, json={
        "name": "mlp", "command": ["python", "t.py", "{config_file}"],
        "config_schema": {"type": "object", "required": ["lr"],
                          "properties": {"lr": {"type": "number", "exclusiveMinimum": 0}}}})
    assert api.ok("POST", "/v1/runs/validate", json={"blueprint": "mlp", "config": {"lr": 1}}
                  )["valid"]
    r = api.post("/v1/runs/validate", {"blueprint": "mlp", "config": {"lr": -1}})
    assert r.status_code == 422 and error_of(r)["field"] == "config.lr"
    r = api.post("/v1/runs", {"name": "bp", "blueprint": "mlp", "config": {}})
    assert r.status_code == 422 and "lr" in error_of(r)["message"]
    assert api.submit("bp", blueprint="mlp", command=None, config={"lr": 0.1})["blueprint"] == "mlp"


def test_seed_is_stored_and_handed_to_the_worker(api: Api) -> None:
    run = api.submit("seeded", command=["python", "train.py", "--seed", "{seed}"], seed=7)
    assert api.ok("GET", f"/v1/runs/{run['id']}")["seed"] == 7
    claim = api.claim("box-1")
    assert claim is not None and claim["seed"] == 7 and claim["run"]["seed"] == 7
    for bad in ("7", True, 2**64, 1.5):
        r = api.post("/v1/runs", {"name": "bad-seed", "command": ["x"], "seed": bad})
        assert r.status_code == 422 and error_of(r)["field"] == "seed", (bad, r.text)
