"""Server side of local runs and ``runyard sync``, over HTTP against the real app (in process,
on a real SQLite file):
compact metric rows, the import endpoints, and who may use them."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..support.app_server import AppServer


@pytest.fixture(scope="module")
def admin(shared_app: AppServer) -> Iterator[httpx.Client]:
    with shared_app.client(headers=shared_app.headers()) as http:
        yield http


def user(server: AppServer, admin: httpx.Client, name: str) -> httpx.Client:
    token = admin.post("/v1/tokens", json={"name": name, "role": "user"}).json()["token"]
    return server.client(headers={"Authorization": f"Bearer {token}"})


def local_run(http: httpx.Client) -> dict[str, Any]:
    resp = http.post("/v1/runs", json={"name": "local", "executor": "local"})
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def test_metric_rows(shared_app: AppServer, admin: httpx.Client) -> None:
    claim = local_run(admin)
    run_id, aid, lease = claim["run"]["id"], claim["attempt"]["id"], claim["lease"]
    now = time.time()
    body = {"attempt_id": aid, "lease": lease,
            "rows": [[0, now, {"loss": 1.0, "acc": 0}], [1, "2026-01-01T00:00:00Z",
                                                          {"loss": "NaN"}], [2, None, {}]],
            "points": [{"step": 5, "tag": "loss", "value": 0.5}]}
    resp = admin.post(f"/v1/runs/{run_id}/metrics", json=body)
    assert resp.status_code == 200 and resp.json()["written"] == 4, resp.text
    again = admin.post(f"/v1/runs/{run_id}/metrics", json=body)  # upserts: nothing new
    assert again.status_code == 200
    items = admin.get(f"/v1/runs/{run_id}/metrics", params={"tag": "loss"}).json()["items"]
    assert [(p["step"], p["value"]) for p in items] == [(0, 1.0), (1, "NaN"), (5, 0.5)]
    assert items[1]["at"].startswith("2026-01-01T00:00:00")
    bad = admin.post(f"/v1/runs/{run_id}/metrics", json={
        "attempt_id": aid, "lease": lease, "rows": [[3, now, {"loss": "high"}]]})
    assert bad.status_code == 422 and "rows[0][2].loss" in bad.text
    neg = admin.post(f"/v1/runs/{run_id}/metrics", json={
        "attempt_id": aid, "lease": lease, "rows": [[-1, now, {"loss": 1.0}]]})
    assert neg.status_code == 422
    long = admin.post(f"/v1/runs/{run_id}/metrics", json={
        "attempt_id": aid, "lease": lease, "rows": [[3, now, {"t" * 65: 1.0}]]})
    assert long.status_code == 422
    wide = {f"m{i}": 1.0 for i in range(1000)}
    huge = admin.post(f"/v1/runs/{run_id}/metrics", json={
        "attempt_id": aid, "lease": lease, "rows": [[i, now, wide] for i in range(101)]})
    assert huge.status_code == 413
    stale = admin.post(f"/v1/runs/{run_id}/metrics", json={
        "attempt_id": aid, "lease": "not-the-lease", "rows": [[9, now, {"loss": 1.0}]]})
    assert stale.status_code == 409


def record(run_id: str, status: str = "completed") -> dict[str, Any]:
    t = time.time() - 60
    return {"run": {"id": run_id, "name": "synced", "project": "nb", "config": {"lr": 1},
                    "status": status, "termination_reason": "completed", "exit_code": 0,
                    "created_at": t, "started_at": t, "ended_at": t + 30, "host_id": "laptop",
                    "progress": {"schema": "runyard.progress/v1", "updated_at": "x",
                                 "step": 9}},
            "attempts": [{"number": 1, "host_id": "laptop", "claimed_at": t,
                          "ended_at": t + 30, "termination_reason": "completed"}],
            "events": [{"seq": 1, "attempt": 0, "at": t, "kind": "status", "status": "queued"},
                       {"seq": 2, "attempt": 1, "at": t + 30, "kind": "status",
                        "status": "completed"}],
            "origin": "laptop:/home/me/.runyard"}


def test_import_is_idempotent_and_fenced(shared_app: AppServer, admin: httpx.Client) -> None:
    alice = user(shared_app, admin, "alice-sync")
    bob = user(shared_app, admin, "bob-sync")
    run_id = "0123456789abcdef0123456789abcdef"
    first = alice.post("/v1/runs/import", json=record(run_id))
    assert first.status_code == 201 and first.json()["created"] is True, first.text
    second = alice.post("/v1/runs/import", json=record(run_id))
    assert second.status_code == 200 and second.json()["created"] is False
    run = admin.get(f"/v1/runs/{run_id}").json()
    assert run["status"] == "completed" and run["executor"] == "local"
    assert run["owner"] == "alice-sync" and run["host_id"] == "laptop"
    assert run["progress"]["step"] == 9
    events = admin.get(f"/v1/runs/{run_id}/events").json()["items"]
    assert [(e["seq"], e["kind"]) for e in events] == [(1, "status"), (2, "status"),
                                                       (3, "imported")]
    assert events[-1]["details"]["origin"] == "laptop:/home/me/.runyard"

    rows = {"attempt": 1, "rows": [[s, time.time(), {"loss": 1 / (s + 1)}] for s in range(10)]}
    assert alice.post(f"/v1/runs/{run_id}/import/metrics", json=rows).json()["written"] == 10
    alice.post(f"/v1/runs/{run_id}/import/metrics", json=rows)
    tags = admin.get(f"/v1/runs/{run_id}/metrics/tags").json()["items"]
    assert tags[0]["count"] == 10  # resent: no duplicates
    assert bob.post(f"/v1/runs/{run_id}/import/metrics", json=rows).status_code == 403
    assert bob.post("/v1/runs/import", json=record(run_id)).status_code == 403

    blob = b"checkpoint bytes"
    sha = hashlib.sha256(blob).hexdigest()
    put = alice.put(f"/v1/runs/{run_id}/import/artifacts/checkpoints/final.pt",
                    params={"attempt": 1}, content=blob, headers={"X-Content-SHA256": sha})
    assert put.status_code == 201, put.text
    wrong = alice.put(f"/v1/runs/{run_id}/import/artifacts/checkpoints/x.pt",
                      params={"attempt": 1}, content=b"other",
                      headers={"X-Content-SHA256": sha})
    assert wrong.status_code >= 400
    ck = alice.post(f"/v1/runs/{run_id}/import/checkpoints", json={
        "attempt": 1, "step": 9, "status": "complete", "name": "checkpoints/final.pt",
        "sha256": sha, "metrics": {"loss": 0.1}})
    assert ck.status_code == 201, ck.text
    listed = admin.get(f"/v1/runs/{run_id}/checkpoints").json()["items"]
    assert listed[0]["size"] == len(blob) and listed[0]["status"] == "complete"
    assert admin.get(f"/v1/blobs/{sha}").content == blob

    live = local_run(alice)  # a run with a lease takes no imported points
    refused = alice.post(f"/v1/runs/{live['run']['id']}/import/metrics", json=rows)
    assert refused.status_code == 409
    running = alice.post("/v1/runs/import", json=record("fedcba9876543210", "running"))
    assert running.status_code == 422 and "only ended runs" in running.text
    bad_id = alice.post("/v1/runs/import", json=record("../etc"))
    assert bad_id.status_code == 422
    # Where a run ran is shown to others and stored: a NUL (which PostgreSQL cannot store)
    # or an empty place is refused naming the field, as the placement route does.
    for where, value in (("run", {"artifact_store": "/a\x00b"}),
                         ("attempt", {"workdir": ""})):
        doc = record("fedcba9876543211")
        (doc["run"] if where == "run" else doc["attempts"][0]).update(value)
        bad = alice.post("/v1/runs/import", json=doc)
        field = "run.artifact_store" if where == "run" else "attempts[0].workdir"
        assert bad.status_code == 422 and field in bad.text, bad.text
    alice.close()
    bob.close()


def test_a_lapsed_local_run_is_failed_not_requeued(tmp_path: Path) -> None:
    srv = AppServer(tmp_path / "s", stale_after_s=1).start()
    try:
        with srv.client(headers=srv.headers()) as http:
            claim = local_run(http)
            run_id = claim["run"]["id"]
            deadline = time.monotonic() + 20
            run: dict[str, Any] = {}
            while time.monotonic() < deadline:
                run = http.get(f"/v1/runs/{run_id}").json()
                if run["status"] not in ("running", "claimed"):
                    break
                time.sleep(0.2)
            assert run["status"] == "failed" and run["termination_reason"] == "lost"
            queued = http.get("/v1/runs", params={"status": "queued"}).json()["items"]
            assert run_id not in [r["id"] for r in queued]
    finally:
        srv.stop()
