"""Host ids over HTTP: local runs never occupy a worker's slots, host ids are checked where
they enter, and workers can be deleted."""

from __future__ import annotations

import pytest

from ..support.server_api import Api, admin, caps, error_of


@pytest.fixture
def api(app_server):  # type: ignore[no-untyped-def]
    client = admin(app_server)
    yield client
    client.close()


def _local(api: Api, host_id: str) -> dict[str, object]:
    out: dict[str, object] = api.ok("POST", "/v1/runs", 201, json={
        "name": "notebook", "executor": "local", "host_id": host_id})
    return out


def test_a_local_run_does_not_take_a_workers_slot(api: Api) -> None:
    alice = Api(api.server, api.token("alice", "user"))
    try:
        held = _local(alice, "gpu-box")
    finally:
        alice.close()
    api.submit("scheduled")
    claim = api.claim("gpu-box", slots=1)
    assert claim is not None and claim["run"]["name"] == "scheduled"
    worker = api.ok("GET", "/v1/workers")["items"][0]
    assert worker["active_attempts"] == 1
    assert [c["name"] for c in worker["current"]] == ["scheduled"]
    assert held["run"]["host_id"] != "gpu-box"  # type: ignore[index]


@pytest.mark.parametrize("bad", ["../../x", "a/b", "", "x" * 201, "-x", "a b"])
def test_host_ids_are_checked_where_they_enter(api: Api, bad: str) -> None:
    r = api.post("/v1/runs", {"name": "n", "executor": "local", "host_id": bad})
    assert r.status_code == 422 and error_of(r)["field"] == "host_id", r.text
    r = api.post("/v1/workers/claim", {"host_id": bad, "capabilities": caps(bad)})
    assert r.status_code == 422 and error_of(r)["field"] == "host_id", r.text
    r = api.post("/v1/workers/claim", {"host_id": bad, "capabilities": {}})
    assert r.status_code == 422 and error_of(r)["field"] == "host_id", r.text
    toml = f'[[hosts]]\nid = "{bad}"\nslots = 1\n'
    r = api.post("/v1/manifest/validate", {"text": toml})
    assert r.status_code == 422 and "hosts" in r.text, r.text
    assert api.ok("GET", "/v1/workers")["items"] == []


def test_host_ids_of_the_usual_shapes_are_accepted(api: Api) -> None:
    for host in ("gpu-box", "node1.lab.example.org", "rack:3_b", "A" * 200):
        assert api.claim(host) is None


def test_delete_a_worker(api: Api) -> None:
    assert api.request("DELETE", "/v1/workers/ghost").status_code == 404
    run = api.submit("busy")
    claim = api.claim("gpu-box")
    assert claim is not None
    r = api.request("DELETE", "/v1/workers/gpu-box")
    assert r.status_code == 409, r.text
    assert run["id"] in error_of(r)["message"] and claim["attempt"]["id"] in error_of(r)["message"]
    api.ok("POST", f"/v1/attempts/{claim['attempt']['id']}/complete",
           json={"lease": claim["lease"], "exit_code": 0})
    assert api.ok("DELETE", "/v1/workers/gpu-box") == {"host_id": "gpu-box", "deleted": True}
    assert api.ok("GET", "/v1/workers")["items"] == []
    assert api.request("DELETE", "/v1/workers/gpu-box").status_code == 404
    assert api.claim("gpu-box") is None  # it registers again when it claims again
    assert [w["host_id"] for w in api.ok("GET", "/v1/workers")["items"]] == ["gpu-box"]
