"""An attempt's own credential (docs/security.md): handed out by a claim, good for that
attempt's leased calls only, and only while the attempt is active."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from ..support.server_api import Api, admin, error_of, sha


@pytest.fixture
def api(app_server):  # type: ignore[no-untyped-def]
    client = admin(app_server)
    yield client
    client.close()


def _claimed(api: Api, worker: Api, name: str) -> tuple[dict[str, Any], Api]:
    run = api.submit(name, executor="slurm")
    got = worker.claim("login", executor="slurm")
    assert got is not None and got["run"]["id"] == run["id"]
    token = got["attempt_token"]
    assert isinstance(token, str) and token.startswith("rya_")
    return got, Api(api.server, token)


def test_the_credential_reports_for_its_own_attempt_and_nothing_else(api: Api) -> None:
    worker = Api(api.server, api.token("login-node", "worker"))
    mine, scoped = _claimed(api, worker, "mine")
    other, other_scoped = _claimed(api, worker, "other")
    att, lease, run_id = mine["attempt"]["id"], mine["lease"], mine["run"]["id"]
    base = f"/v1/attempts/{att}"

    # Its own attempt's calls, all of them.
    assert scoped.ok("POST", f"{base}/heartbeat", json={"lease": lease, "running": True}
                     )["stop"] is False
    scoped.ok("POST", f"{base}/placement", json={"lease": lease, "external_id": "77"})
    scoped.ok("POST", f"{base}/progress", json={"lease": lease, "snapshot": {
        "schema": "runyard.progress/v1", "updated_at": "2026-01-01T00:00:00Z", "step": 3}})
    scoped.ok("POST", f"/v1/runs/{run_id}/metrics", json={
        "lease": lease, "attempt_id": att, "points": [{"step": 3, "tag": "loss", "value": 1}]})
    scoped.ok("POST", f"{base}/logs", json={"lease": lease, "chunks": [
        {"stream": "stdout", "offset": 0, "data": "hello\n"}]})
    blob = b"weights"
    scoped.ok("PUT", f"/v1/runs/{run_id}/artifacts/model.bin", 201, content=blob,
              params={"attempt_id": att, "kind": "file"},
              headers={"X-Content-SHA256": sha(blob), "X-Runyard-Lease": lease})
    scoped.ok("POST", f"{base}/checkpoints", 201, json={
        "lease": lease, "step": 3, "status": "complete", "name": "model.bin",
        "sha256": sha(blob)})
    assert scoped.ok("GET", "/v1/whoami")["role"] == "attempt"

    # Nothing else: reads, claims, submissions, stops, tokens...
    for method, path, body in (
            ("GET", "/v1/runs", None), ("GET", f"/v1/runs/{run_id}", None),
            ("GET", f"/v1/runs/{run_id}/logs", None), ("GET", "/v1/workers", None),
            ("POST", "/v1/workers/claim", {"host_id": "login", "capabilities": {}}),
            ("POST", "/v1/runs", {"name": "x", "command": ["true"]}),
            ("POST", f"/v1/runs/{run_id}/stop", {}),
            ("POST", "/v1/tokens", {"name": "x", "role": "operator"})):
        r = scoped.request(method, path, json=body)
        assert r.status_code == 403, (method, path, r.text)
    # ... nor another attempt, even with that attempt's lease.
    o_att, o_lease, o_run = other["attempt"]["id"], other["lease"], other["run"]["id"]
    for method, path, body in (
            ("POST", f"/v1/attempts/{o_att}/heartbeat", {"lease": o_lease}),
            ("POST", f"/v1/attempts/{o_att}/complete", {"lease": o_lease}),
            ("POST", f"/v1/attempts/{o_att}/fail", {"lease": o_lease, "reason": "user_error"}),
            ("POST", f"/v1/attempts/{o_att}/placement", {"lease": o_lease}),
            ("POST", f"/v1/attempts/{o_att}/checkpoints",
             {"lease": o_lease, "step": 1, "status": "incomplete"}),
            ("POST", f"/v1/runs/{o_run}/metrics", {"lease": o_lease, "attempt_id": o_att,
                                                    "points": []}),
            ("POST", f"/v1/runs/{o_run}/metrics", {"lease": lease, "attempt_id": att,
                                                    "points": []})):
        r = scoped.request(method, path, json=body)
        assert r.status_code == 403, (path, r.text)
        assert error_of(r)["type"] == "Forbidden"
    r = scoped.request("PUT", f"/v1/runs/{o_run}/artifacts/x.bin", content=b"x",
                       params={"attempt_id": o_att},
                       headers={"X-Content-SHA256": sha(b"x"), "X-Runyard-Lease": o_lease})
    assert r.status_code == 403, r.text
    assert api.ok("GET", f"/v1/runs/{o_run}")["status"] == "claimed"  # untouched

    # It ends with its attempt: completed here, cancelled there.
    scoped.ok("POST", f"{base}/complete", json={"lease": lease, "exit_code": 0})
    assert api.ok("GET", f"/v1/runs/{run_id}")["status"] == "completed"
    r = scoped.post(f"{base}/heartbeat", {"lease": lease})
    assert r.status_code == 401 and error_of(r)["type"] == "AuthError"
    assert scoped.get("/v1/whoami").status_code == 401
    api.ok("POST", f"/v1/runs/{o_run}/cancel", json={})
    assert other_scoped.post(f"/v1/attempts/{o_att}/heartbeat",
                             {"lease": o_lease}).status_code == 401
    for client in (worker, scoped, other_scoped):
        client.close()


def test_only_its_hash_is_stored_and_no_token_may_pose_as_one(api: Api) -> None:
    import sqlalchemy as sa

    worker = Api(api.server, api.token("login-node", "worker"))
    got, scoped = _claimed(api, worker, "hashed")
    token = got["attempt_token"]
    engine = sa.create_engine(f"sqlite:///{api.server.data_dir / 'runyard.db'}")  # type: ignore[union-attr]
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM attempts WHERE id = :id"),
                           {"id": got["attempt"]["id"]}).mappings().one()
    engine.dispose()
    assert row["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in {str(v) for v in row.values()}
    # Not in any read either.
    shown = api.ok("GET", f"/v1/runs/{got['run']['id']}")
    assert token not in str(shown) and row["token_hash"] not in str(shown)
    # No token role or secret can pass for an attempt credential.
    r = api.post("/v1/tokens", {"name": "sneaky", "role": "attempt"})
    assert r.status_code == 422 and error_of(r)["field"] == "role"
    assert Api(api.server, "rya_" + "x" * 43).get("/v1/whoami").status_code == 401
    for client in (worker, scoped):
        client.close()
