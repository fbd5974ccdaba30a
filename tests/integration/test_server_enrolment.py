"""Worker tokens bound to hosts (docs/security.md, "Enrolling workers"): a token acts only as
the hosts of its binding, binds itself on first use when created without one, and registers
at most its cap of hosts; on each database."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..support.app_server import AppServer
from ..support.server_api import Api, admin, caps, error_of


@pytest.fixture
def app(tmp_path: Path, db_url: str) -> Iterator[AppServer]:
    server = AppServer(tmp_path / "server", db_url=db_url, max_workers=6).start()
    yield server
    server.stop()


@pytest.fixture
def op(app: AppServer) -> Iterator[Api]:
    client = admin(app)
    yield client
    client.close()


def _worker(op: Api, name: str, **binding: Any) -> Api:
    out = op.ok("POST", "/v1/tokens", 201, json={"name": name, "role": "worker", **binding})
    assert out["hosts"] == binding.get("hosts") and out["max_hosts"] == binding.get("max_hosts")
    return Api(op.server, out["token"])


def _claim(api: Api, host: str) -> Any:
    return api.post("/v1/workers/claim", {"host_id": host, "capabilities": caps(host)})


def _workers(op: Api) -> dict[str, dict[str, Any]]:
    return {w["host_id"]: w for w in op.ok("GET", "/v1/workers")["items"]}


def _tokens(op: Api) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in op.ok("GET", "/v1/tokens")["items"]}


def test_a_bound_token_cannot_claim_as_another_host(op: Api) -> None:
    a = _worker(op, "gpu-a", hosts=["gpu-a"])
    b = _worker(op, "gpu-b", hosts=["gpu-b"])
    assert b.ok("POST", "/v1/workers/claim", 204, json={"host_id": "gpu-b",
                                                         "capabilities": caps("gpu-b")}) is None
    op.ok("POST", "/v1/workers/gpu-b/drain")
    pinned = op.submit("pinned", constraints={"allowed_hosts": ["gpu-b"]}, env={"KEY": "s3"})
    before = _workers(op)["gpu-b"]
    r = _claim(a, "gpu-b")
    assert r.status_code == 403, r.text
    err = error_of(r)
    assert err["type"] == "Forbidden" and err["field"] == "host_id"
    assert "bound to host 'gpu-a'" in err["message"] and "'gpu-b'" in err["message"]
    # Nothing changed: the other host keeps its registration and its drain, the run waits.
    after = _workers(op)["gpu-b"]
    assert after == before and after["drained"] is True
    assert op.ok("GET", f"/v1/runs/{pinned['id']}")["status"] == "queued"
    # Its own host is fine (the pinned run is not for it).
    assert _claim(a, "gpu-a").status_code == 204
    assert set(_workers(op)) == {"gpu-a", "gpu-b"}
    # And the drain holds for the host's own token too.
    assert _claim(b, "gpu-b").status_code == 204
    assert op.ok("GET", f"/v1/runs/{pinned['id']}")["status"] == "queued"


def test_a_pattern_token_registers_matching_hosts_only(op: Api) -> None:
    fleet = _worker(op, "gpu-fleet", hosts=["gpu-*", "spare-[0-9]"])
    for host in ("gpu-1", "gpu-2", "spare-3"):
        assert _claim(fleet, host).status_code == 204, host
    for host in ("cpu-1", "GPU-1", "spare-10", "xgpu-1"):
        r = _claim(fleet, host)
        assert r.status_code == 403 and "'gpu-*', 'spare-[0-9]'" in error_of(r)["message"]
    assert set(_workers(op)) == {"gpu-1", "gpu-2", "spare-3"}
    assert _tokens(op)["gpu-fleet"]["hosts"] == ["gpu-*", "spare-[0-9]"]


def test_the_cap_refuses_the_next_registration(op: Api) -> None:
    enrol = _worker(op, "enrol", hosts=["node-*"], max_hosts=2)
    assert _claim(enrol, "node-1").status_code == 204
    assert _claim(enrol, "node-2").status_code == 204
    r = _claim(enrol, "node-3")
    assert r.status_code == 403, r.text
    err = error_of(r)
    assert "has registered 2 hosts" in err["message"] and "max_hosts 2" in err["message"]
    assert err["field"] == "host_id"
    assert _claim(enrol, "node-1").status_code == 204  # a registered host claims on
    assert set(_workers(op)) == {"node-1", "node-2"}
    # Removing a worker frees its place.
    op.ok("DELETE", "/v1/workers/node-1")
    assert _claim(enrol, "node-3").status_code == 204
    assert set(_workers(op)) == {"node-2", "node-3"}


def test_the_server_caps_workers_in_all(op: Api) -> None:
    # The app holds at most 6 workers (max_workers=6); operators count like everyone.
    for i in range(6):
        assert op.claim(f"host-{i}") is None
    r = _claim(op, "host-6")
    assert r.status_code == 403 and "--max-workers 6" in error_of(r)["message"], r.text
    assert len(_workers(op)) == 6
    assert op.claim("host-0") is None  # a registered host claims on


def test_a_token_created_unbound_binds_on_first_claim(op: Api) -> None:
    first = _worker(op, "tofu")
    assert _tokens(op)["tofu"]["hosts"] is None
    assert _claim(first, "box-1").status_code == 204
    assert _tokens(op)["tofu"]["hosts"] == ["box-1"]
    assert _workers(op)["box-1"]["token_name"] == "tofu"
    r = _claim(first, "box-2")
    assert r.status_code == 403 and "bound to host 'box-1'" in error_of(r)["message"], r.text
    assert set(_workers(op)) == {"box-1"}
    assert _claim(first, "box-1").status_code == 204


def test_two_first_claims_at_once_bind_one_host(op: Api) -> None:
    racer = _worker(op, "racer")
    answers: dict[str, int] = {}
    go = threading.Barrier(2)

    def claim(host: str) -> None:
        client = Api(op.server, racer.secret)
        try:
            go.wait(timeout=30)
            answers[host] = _claim(client, host).status_code
        finally:
            client.close()

    threads = [threading.Thread(target=claim, args=(h,)) for h in ("left", "right")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(answers.values()) == [204, 403], answers
    won = next(h for h, code in answers.items() if code == 204)
    assert _tokens(op)["racer"]["hosts"] == [won]
    assert set(_workers(op)) == {won}


def test_a_token_heartbeats_only_for_its_hosts(op: Api) -> None:
    a = _worker(op, "hb-a", hosts=["hb-a"])
    b = _worker(op, "hb-b", hosts=["hb-b"])
    run = op.submit("beat")
    claim = _claim(b, "hb-b").json()
    lease = {"lease": claim["lease"], "running": True}
    attempt = claim["attempt"]["id"]
    r = a.post(f"/v1/attempts/{attempt}/heartbeat", lease)
    assert r.status_code == 403 and "'hb-b'" in error_of(r)["message"], r.text
    assert op.ok("GET", f"/v1/runs/{run['id']}")["status"] == "claimed"  # not marked running
    assert b.ok("POST", f"/v1/attempts/{attempt}/heartbeat", json=lease)["stop"] is False
    assert op.ok("GET", f"/v1/runs/{run['id']}")["status"] == "running"


@pytest.mark.parametrize("body, field", [
    ({"role": "user", "hosts": ["x"]}, "hosts"),
    ({"role": "operator", "max_hosts": 3}, "max_hosts"),
    ({"role": "worker", "hosts": []}, "hosts"),
    ({"role": "worker", "hosts": "gpu-*"}, "hosts"),
    ({"role": "worker", "hosts": ["a,b"]}, "hosts[0]"),
    ({"role": "worker", "hosts": ["ok", "../x"]}, "hosts[1]"),
    ({"role": "worker", "hosts": ["x" * 201]}, "hosts[0]"),
    ({"role": "worker", "hosts": [f"h{i}" for i in range(65)]}, "hosts"),
    ({"role": "worker", "max_hosts": 0}, "max_hosts"),
    ({"role": "worker", "max_hosts": 2**63}, "max_hosts"),
])
def test_bad_bindings_are_refused(op: Api, body: dict[str, Any], field: str) -> None:
    r = op.post("/v1/tokens", {"name": "bad", **body})
    assert r.status_code == 422, r.text
    assert error_of(r)["field"] == field
    assert "bad" not in _tokens(op)
