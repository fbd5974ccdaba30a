"""Where a run's artifacts are and whether they are archived, as the server records them from
uploads and placements (runyard.archiving), over HTTP against the real app on each dialect."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..support.app_server import AppServer
from ..support.server_api import Api, admin, sha


@pytest.fixture
def api(dialect_app: AppServer) -> Iterator[Api]:
    client = admin(dialect_app)
    yield client
    client.close()


def put(api: Api, run_id: str, name: str, data: bytes, *, kind: str,
        attempt_id: str | None = None, lease: str | None = None) -> Any:
    """An upload with the lease, or (no lease) an ended local run's import."""
    if lease is None:
        return api.ok("PUT", f"/v1/runs/{run_id}/import/artifacts/{name}", 201,
                      params={"attempt": 1, "kind": kind}, content=data,
                      headers={"X-Content-SHA256": sha(data)})
    return api.ok("PUT", f"/v1/runs/{run_id}/artifacts/{name}", 201,
                  params={"attempt_id": attempt_id, "kind": kind}, content=data,
                  headers={"X-Content-SHA256": sha(data), "X-Runyard-Lease": lease})


def where(api: Api, run_id: str) -> tuple[bool, str | None, int]:
    run = api.ok("GET", f"/v1/runs/{run_id}")
    events = api.ok("GET", f"/v1/runs/{run_id}/events", params={"limit": 1000})["items"]
    return run["archived"], run["artifact_store"], sum(e["kind"] == "archived" for e in events)


def store_url(server: AppServer) -> str:
    return (server.data_dir / "artifacts").absolute().as_uri()


def test_an_agent_run_is_archived_by_its_bundle(api: Api, dialect_app: AppServer) -> None:
    run = api.submit("agent-run")
    claim = api.claim("box-1")
    assert claim is not None and claim["run"]["id"] == run["id"]
    rid, aid, lease = run["id"], claim["attempt"]["id"], claim["lease"]
    assert where(api, rid) == (False, None, 0)
    put(api, rid, "checkpoints/a.pt", b"weights", kind="checkpoint", attempt_id=aid,
        lease=lease)
    # Its files go to the server's store: that is where its artifacts are, not archived yet.
    assert where(api, rid) == (False, store_url(dialect_app), 0)
    bundle = b"a bundle's bytes"
    put(api, rid, "artifacts.tar.zst", bundle, kind="bundle", attempt_id=aid, lease=lease)
    assert where(api, rid) == (True, store_url(dialect_app), 1)
    digest = sha(bundle)
    assert (dialect_app.data_dir / "artifacts" / digest[:2] / digest[2:4] / digest).is_file()
    put(api, rid, "artifacts.tar.zst", bundle, kind="bundle", attempt_id=aid, lease=lease)
    assert where(api, rid) == (True, store_url(dialect_app), 1)  # again: nothing new
    # A holder's placement cannot move the artifacts of an archived run.
    out = api.ok("POST", f"/v1/attempts/{aid}/placement",
                 json={"lease": lease, "artifact_store": "/home/me/elsewhere"})
    assert out["artifact_store"] == store_url(dialect_app)
    assert where(api, rid)[1] == store_url(dialect_app)


def test_a_local_run_names_its_directory_until_it_is_archived(api: Api,
                                                             dialect_app: AppServer) -> None:
    claim = api.ok("POST", "/v1/runs", 201, json={"name": "by-hand", "executor": "local",
                                                 "workdir": "/home/me/exp",
                                                 "host_id": "laptop"})
    rid, aid, lease = claim["run"]["id"], claim["attempt"]["id"], claim["lease"]
    local_dir = "/home/me/.runyard/local-runs/x/artifacts"
    api.ok("POST", f"/v1/attempts/{aid}/placement",
           json={"lease": lease, "artifact_store": local_dir})
    run = api.ok("GET", f"/v1/runs/{rid}")
    assert (run["host_id"], run["executor"], run["workdir"]) == (
        "local/laptop", "local", "/home/me/exp")
    assert run["attempts"][0]["workdir"] == "/home/me/exp"
    assert where(api, rid) == (False, local_dir, 0)
    # A checkpoint reaching the server moves nothing: the rest of its files are still there.
    put(api, rid, "checkpoints/c.pt", b"ck", kind="checkpoint", attempt_id=aid, lease=lease)
    assert where(api, rid) == (False, local_dir, 0)
    api.ok("POST", f"/v1/attempts/{aid}/complete", json={"lease": lease, "exit_code": 0})
    # Archived after its end, by its owner, through the ended run's import (`runyard sync`).
    put(api, rid, "artifacts.tar.zst", b"bundle of a local run", kind="bundle")
    assert where(api, rid) == (True, store_url(dialect_app), 1)


def test_a_synced_run_keeps_its_location_until_its_bundle_arrives(api: Api,
                                                                 dialect_app: AppServer
                                                                 ) -> None:
    t = time.time() - 60
    run_id = "00aa11bb22cc33dd44ee55ff66778899"
    body = {"run": {"id": run_id, "name": "synced", "status": "completed",
                    "created_at": t, "ended_at": t + 1, "host_id": "local/laptop",
                    "workdir": "/home/me/exp",
                    "artifact_store": "/home/me/.runyard/local-runs/r/artifacts"},
            "attempts": [{"number": 1, "host_id": "local/laptop", "claimed_at": t,
                          "ended_at": t + 1, "workdir": "/home/me/exp"}],
            "events": [], "origin": "laptop:/home/me/.runyard"}
    api.ok("POST", "/v1/runs/import", 201, json=body)
    run = api.ok("GET", f"/v1/runs/{run_id}")
    assert run["attempts"][0]["workdir"] == "/home/me/exp"
    assert where(api, run_id) == (False, "/home/me/.runyard/local-runs/r/artifacts", 0)
    put(api, run_id, "checkpoints/c.pt", b"ck2", kind="checkpoint")
    assert where(api, run_id)[:2] == (False, "/home/me/.runyard/local-runs/r/artifacts")
    put(api, run_id, "artifacts.tar.zst", b"synced bundle", kind="bundle")
    assert where(api, run_id) == (True, store_url(dialect_app), 1)
    bad = dict(body, attempts=[{"number": 1, "workdir": "x" * 2001}])
    bad["run"] = dict(body["run"], id="00aa11bb22cc33dd44ee55ff6677889a")
    refused = api.request("POST", "/v1/runs/import", json=bad)
    assert refused.status_code == 422 and "attempts[0].workdir" in refused.text


def test_blobs_of_the_store_are_where_the_run_says(dialect_app: AppServer, api: Api) -> None:
    """The store URL a run records is the directory the blobs are in."""
    run = api.submit("where-blobs")
    claim = api.claim("box-1")
    assert claim is not None
    data = b"bundle bytes of where-blobs"
    put(api, run["id"], "artifacts.tar.zst", data, kind="bundle",
        attempt_id=claim["attempt"]["id"], lease=claim["lease"])
    url = api.ok("GET", f"/v1/runs/{run['id']}")["artifact_store"]
    assert url.startswith("file://")
    root = Path(url[len("file://"):])
    digest = sha(data)
    assert (root / digest[:2] / digest[2:4] / digest).read_bytes() == data
