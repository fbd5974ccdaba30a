"""Live features: the event stream, Prometheus, the sweeper, manifests, the token CLI; and a
representative flow on both database dialects."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from runyard.queue import Queue
from runyard.store import open_store

from ..support.server_api import Api, admin, error_of
from ..support.thread_server import ThreadServer

MANIFEST = """
[[hosts]]
id = "gpu-box"
allow = ["mlp-*"]
slots = 2

[[blueprints]]
name = "mlp"
command = ["python", "-m", "train", "--config", "{config_file}"]
config_schema = { type = "object", required = ["lr"], properties = { lr = { type = "number" } } }

[[jobs]]
name = "mlp-small"
blueprint = "mlp"
config = { lr = 0.01 }

[[jobs]]
name = "mlp-large"
blueprint = "mlp"
config = { lr = 0.001 }
min_ram_gib = 4
"""


def read_sse(server: Any, token: str, stop: threading.Event, out: list[tuple[str, str, Any]],
             headers: dict[str, str] | None = None, params: dict[str, str] | None = None,
             opened: threading.Event | None = None) -> None:
    """Collect (id, event, data) frames until ``stop`` is set (seen at the next line: an event
    or the server's keep-alive) or the stream ends (the server's stop ends it); ``opened`` is
    set once the stream has answered (from then on it sees every new event).

    One generous timeout: an httpx stream cannot be read on after a read timeout, and on a
    loaded machine even the answer's headers can take seconds."""
    h = {"Authorization": f"Bearer {token}", **(headers or {})}
    with httpx.Client(timeout=httpx.Timeout(60)) as c, \
            c.stream("GET", f"{server.url}/v1/events/stream", headers=h, params=params) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        if opened is not None:
            opened.set()
        frame: dict[str, str] = {}
        try:
            for line in r.iter_lines():
                if stop.is_set():
                    return
                if not line:
                    if "data" in frame:
                        out.append((frame.get("id", ""), frame.get("event", ""),
                                    json.loads(frame["data"])))
                    frame = {}
                elif not line.startswith(":"):
                    k, _, v = line.partition(":")
                    frame[k] = v.strip()
        except httpx.RemoteProtocolError:
            return  # the server stopped and cut the stream: the end of this reader


def wait_for(cond: Any, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_event_stream_status_progress_and_resume(sqlite_server) -> None:  # type: ignore[no-untyped-def]
    api = admin(sqlite_server)
    got: list[tuple[str, str, Any]] = []
    stop, opened = threading.Event(), threading.Event()
    t = threading.Thread(target=read_sse, args=(sqlite_server, api.secret, stop, got),
                         kwargs={"opened": opened}, daemon=True)
    t.start()
    try:
        # A stream without Last-Event-ID starts at its answer: what happens before is not in it.
        assert opened.wait(30), "the event stream did not answer"
        run = api.submit("streamed")
        claim = api.claim()
        assert claim
        api.ok("POST", f"/v1/attempts/{claim['attempt']['id']}/progress", json={
            "lease": claim["lease"], "snapshot": {"schema": "runyard.progress/v1",
                                                  "step": 3, "total_steps": 10}})
        wait_for(lambda: any(e == "progress" for _, e, _ in got)
                 and sum(e == "status" for _, e, _ in got) >= 2)
    finally:
        stop.set()  # the reader ends at its next line, or with the server
    statuses = [(d["run_id"], d["status"]) for _, e, d in got if e == "status"]
    assert statuses[:2] == [(run["id"], "queued"), (run["id"], "claimed")]
    prog = [d for _, e, d in got if e == "progress"][0]
    assert prog["run_id"] == run["id"] and prog["progress"]["step"] == 3
    first_id = [i for i, e, _ in got if e == "status"][0]
    # Resume after the first event: the second comes again, the first does not.
    again: list[tuple[str, str, Any]] = []
    stop = threading.Event()
    t = threading.Thread(target=read_sse, args=(sqlite_server, api.secret, stop, again),
                         kwargs={"headers": {"Last-Event-ID": first_id},
                                 "params": {"run_id": run["id"]}}, daemon=True)
    t.start()
    try:
        wait_for(lambda: any(e == "status" for _, e, _ in again))
    finally:
        stop.set()  # the reader ends at its next line, or with the server
    replay = [d["status"] for _, e, d in again if e == "status"]
    assert replay[0] == "claimed"
    r = httpx.get(f"{sqlite_server.url}/v1/events/stream", headers={
        **sqlite_server.headers(), "Last-Event-ID": "abc"})
    assert r.status_code == 422 and error_of(r)["field"] == "Last-Event-ID"


def test_prometheus(sqlite_server) -> None:  # type: ignore[no-untyped-def]
    api = admin(sqlite_server)
    api.submit("claimed-one", max_attempts=1)
    assert api.claim("box-9")
    text = httpx.get(f"{sqlite_server.url}/metrics").text
    assert 'runyard_runs{status="claimed"} 1.0' in text
    assert "runyard_workers_alive 1.0" in text
    assert "runyard_claim_seconds_count 1.0" in text
    assert 'runyard_http_requests_total{method="POST",route="/v1/runs",status="201"} 1.0' in text
    assert "runyard_metric_points_ingested_total" in text


def test_sweeper_ends_a_lapsed_lease(tmp_path: Path) -> None:
    """A lease of 1 s that nothing renews: the background sweep ends it as lost."""
    server = ThreadServer(tmp_path / "server", stale_after_s=1).start()
    api = admin(server)
    try:
        run = api.submit("lost-one", max_attempts=1)
        assert api.claim("box-9")
        wait_for(lambda: api.ok("GET", f"/v1/runs/{run['id']}")["status"] == "failed",
                 timeout=15)
        detail = api.ok("GET", f"/v1/runs/{run['id']}")
        assert detail["termination_reason"] == "lost"
        text = httpx.get(f"{server.url}/metrics").text
        assert "runyard_workers_alive 0.0" in text
    finally:
        api.close()
        server.stop()


def test_manifest_validate_reload_idempotent(sqlite_server) -> None:  # type: ignore[no-untyped-def]
    api = admin(sqlite_server)
    ok = api.ok("POST", "/v1/manifest/validate", json={"text": MANIFEST, "source": "fleet.toml"})
    assert ok["jobs"] == 2 and ok["blueprints"] == 1 and ok["hosts"] == 1
    bad = MANIFEST.replace("lr = 0.01", "lr = -1").replace('name = "mlp-large"', 'nme = "x"')
    r = api.post("/v1/manifest/validate", content=bad.encode(),
                 headers={"content-type": "text/plain"}, params={"source": "fleet.toml"})
    assert r.status_code == 422
    err = error_of(r)
    assert err["type"] == "ManifestError" and len(err["errors"]) >= 2
    assert all(e["file"] == "fleet.toml" and e["line"] for e in err["errors"])
    plan = api.ok("POST", "/v1/manifest/reload", params={"dry_run": "true"},
                  json={"text": MANIFEST, "source": "fleet.toml"})
    assert [j["name"] for j in plan["new"]] == ["mlp-small", "mlp-large"] and plan["dry_run"]
    assert plan["hosts_changed"][0]["id"] == "gpu-box"
    assert api.ok("GET", "/v1/runs")["items"] == []  # a dry run changes nothing
    applied = api.ok("POST", "/v1/manifest/reload", content=MANIFEST.encode(),
                     headers={"content-type": "text/plain"}, params={"source": "fleet.toml"})
    assert len(applied["new"]) == 2 and applied["dry_run"] is False
    runs = api.ok("GET", "/v1/runs", params={"sort": "name"})["items"]
    assert [r["name"] for r in runs] == ["mlp-large", "mlp-small"]
    assert runs[0]["blueprint"] == "mlp" and runs[0]["owner"] == "admin"
    assert [b["name"] for b in api.ok("GET", "/v1/blueprints")["items"]] == ["mlp"]
    again = api.ok("POST", "/v1/manifest/reload", json={"text": MANIFEST,
                                                        "source": "fleet.toml"})
    assert again["new"] == [] and len(again["unchanged"]) == 2 and again["hosts_changed"] == []
    smaller = MANIFEST.split("[[jobs]]\nname = \"mlp-large\"")[0]
    out = api.ok("POST", "/v1/manifest/reload", json={"text": smaller, "source": "fleet.toml"})
    assert len(out["removed"]) == 1 and len(api.ok("GET", "/v1/runs")["items"]) == 2
    r = api.post("/v1/manifest/reload", {"txt": MANIFEST})
    assert r.status_code == 422 and error_of(r)["field"] == "text"


def _cli(*args: str, server: Any, token: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RUNYARD_SERVER": server.url, "RUNYARD_TOKEN": token}
    return subprocess.run([sys.executable, "-m", "runyard", "token", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_token_cli(sqlite_server) -> None:  # type: ignore[no-untyped-def]
    out = _cli("create", "--name", "ci", "--role", "worker", "--json", server=sqlite_server,
               token=sqlite_server.admin_token)
    assert out.returncode == 0, out.stderr
    made = json.loads(out.stdout)
    assert made["role"] == "worker" and made["token"].startswith("ry_")
    out = _cli("ls", "--json", server=sqlite_server, token=sqlite_server.admin_token)
    assert {t["name"] for t in json.loads(out.stdout)} == {"admin", "ci"}
    out = _cli("ls", server=sqlite_server, token=made["token"])
    assert out.returncode == 1 and "403" in out.stderr and "Traceback" not in out.stderr
    out = _cli("revoke", "ci", server=sqlite_server, token=sqlite_server.admin_token)
    assert out.returncode == 0 and "revoked" in out.stdout
    out = _cli("revoke", "ci", server=sqlite_server, token=sqlite_server.admin_token)
    assert out.returncode == 1 and "no active token" in out.stderr
    out = _cli("create", "--name", "x", "--role", "root", server=sqlite_server,
               token=sqlite_server.admin_token)
    assert out.returncode == 2


def test_token_cli_binds_worker_tokens(sqlite_server) -> None:  # type: ignore[no-untyped-def]
    admin_token = sqlite_server.admin_token
    out = _cli("create", "--name", "gpu-box", "--role", "worker", "--host", "gpu-box",
               server=sqlite_server, token=admin_token)
    assert out.returncode == 0 and "bound to host gpu-box" in out.stderr, out.stderr
    out = _cli("create", "--name", "rack", "--role", "worker", "--hosts", "r3-*, spare-1",
               "--max-hosts", "40", "--json", server=sqlite_server, token=admin_token)
    made = json.loads(out.stdout)
    assert made["hosts"] == ["r3-*", "spare-1"] and made["max_hosts"] == 40
    out = _cli("create", "--name", "later", "--role", "worker", server=sqlite_server,
               token=admin_token)
    assert "bound to the first host it claims as" in out.stderr
    table = _cli("ls", server=sqlite_server, token=admin_token).stdout
    rows = {line.split()[0]: line for line in table.splitlines()[1:]}
    assert "gpu-box " in rows["gpu-box"] and "r3-*,spare-1 (max 40)" in rows["rack"]
    assert "(first claim)" in rows["later"]
    for bad in (["--role", "user", "--host", "x"], ["--role", "worker", "--host", "gpu-*"],
                ["--role", "worker", "--max-hosts", "0"]):
        out = _cli("create", "--name", "bad", *bad, server=sqlite_server, token=admin_token)
        assert out.returncode == 2, (bad, out.stderr)
    out = _cli("create", "--name", "bad", "--role", "worker", "--hosts", "a/b",
               server=sqlite_server, token=admin_token)
    assert out.returncode == 1 and "422" in out.stderr and "hosts[0]" in out.stderr


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_flow_on_both_dialects(live_server) -> None:  # type: ignore[no-untyped-def]
    api: Api = admin(live_server)
    run = api.submit("dialect", max_attempts=2)
    claim = api.claim()
    assert claim
    aid, lease = claim["attempt"]["id"], claim["lease"]
    api.ok("POST", f"/v1/attempts/{aid}/heartbeat", json={"lease": lease, "running": True})
    api.ok("POST", f"/v1/runs/{run['id']}/metrics", json={
        "attempt_id": aid, "lease": lease,
        "points": [{"step": i, "tag": "loss", "value": "NaN" if i == 3 else i} for i in range(50)]})
    series = api.ok("GET", f"/v1/runs/{run['id']}/metrics/loss/series", params={"points": 5})
    assert series["total"] == 50
    data = b"weights" * 100
    import hashlib

    digest = hashlib.sha256(data).hexdigest()
    r = api.request("PUT", f"/v1/runs/{run['id']}/artifacts/model.bin",
                    params={"attempt_id": aid}, content=data,
                    headers={"X-Content-SHA256": digest, "X-Runyard-Lease": lease})
    assert r.status_code == 201
    assert api.post(f"/v1/attempts/{aid}/complete", {"lease": "stale" * 8}).status_code == 409
    done = api.ok("POST", f"/v1/attempts/{aid}/complete", json={"lease": lease})
    assert done["status"] == "completed"
    assert api.get(f"/v1/blobs/{digest}").content == data
    assert api.request("DELETE", f"/v1/runs/{run['id']}").status_code == 204
    assert api.get(f"/v1/blobs/{digest}").status_code == 404


def test_a_stream_resuming_far_behind_gets_every_event_once(sqlite_server: ThreadServer) -> None:
    api = admin(sqlite_server)
    run = api.submit("backlog")
    direct = open_store(f"sqlite:///{sqlite_server.data_dir / 'runyard.db'}", upgrade=False)
    try:
        q = Queue(direct, stale_after_s=60)
        for i in range(1200):  # more than two pages of backlog
            q.add_event(run["id"], "warning", {"message": f"w{i}"})
    finally:
        direct.close()
    got: list[tuple[str, str, Any]] = []
    stop = threading.Event()
    t = threading.Thread(target=read_sse, args=(sqlite_server, api.secret, stop, got),
                         kwargs={"params": {"after_id": "0", "run_id": run["id"]}}, daemon=True)
    t.start()
    try:
        wait_for(lambda: sum(e == "warning" for _, e, _ in got) >= 1200, timeout=30)
        api.ok("POST", f"/v1/runs/{run['id']}/cancel", json={})
        wait_for(lambda: got and got[-1][1] == "status", timeout=15)
    finally:
        stop.set()  # the reader ends at its next line, or with the server
    ids = [int(i) for i, e, _ in got if i]
    assert ids == sorted(set(ids))  # in order, none twice
    msgs = [d["details"]["message"] for _, e, d in got if e == "warning"]
    assert msgs == [f"w{i}" for i in range(1200)]
    assert [d["status"] for _, e, d in got if e == "status"][0] == "queued"
