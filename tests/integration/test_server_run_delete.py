"""``DELETE /v1/runs/{id}`` over HTTP against the real app on a real SQLite file: who may delete
which run, why an active run is refused, and that a local run's own folder under the server's
data directory goes with it while nothing outside that folder does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runyard import local

from ..support.app_server import AppServer
from ..support.server_api import Api, admin, error_of


def start_local(api: Api, name: str) -> dict[str, Any]:
    out: dict[str, Any] = api.ok("POST", "/v1/runs", 201, json={
        "name": name, "executor": "local", "host_id": "laptop", "workdir": "/tmp"})
    return out


def end(api: Api, started: dict[str, Any]) -> None:
    api.ok("POST", f"/v1/attempts/{started['attempt']['id']}/complete",
           json={"lease": started["lease"]})


def files_of(server: AppServer, run_id: str) -> Path:
    """The run's folder as the SDK lays it out, with a checkpoint and an artifact in it."""
    root = server.data_dir / "local-runs" / run_id
    (root / "checkpoints").mkdir(parents=True)
    (root / "artifacts" / "plots").mkdir(parents=True)
    (root / "checkpoints" / "step-10.pt").write_bytes(b"weights")
    (root / "artifacts" / "plots" / "loss.png").write_bytes(b"png")
    return root


def test_a_user_deletes_its_own_ended_local_run_and_its_files(app_server: AppServer) -> None:
    op = admin(app_server)
    alice = Api(app_server, op.token("alice", "user"))
    bob = Api(app_server, op.token("bob", "user"))
    viewer = Api(app_server, op.token("eve", "viewer"))
    started = start_local(alice, "notebook")
    rid = started["run"]["id"]
    root = files_of(app_server, rid)

    r = alice.request("DELETE", f"/v1/runs/{rid}")
    assert r.status_code == 409, r.text
    assert error_of(r)["type"] == "Conflict"
    assert "is running: an active run is not deleted" in error_of(r)["message"]
    assert "stop it first" in error_of(r)["message"]
    end(alice, started)

    r = bob.request("DELETE", f"/v1/runs/{rid}")
    assert r.status_code == 403 and "it belongs to 'alice'" in error_of(r)["message"]
    r = viewer.request("DELETE", f"/v1/runs/{rid}")
    assert r.status_code == 403 and error_of(r)["type"] == "Forbidden"
    assert Api(app_server, None).request("DELETE", f"/v1/runs/{rid}").status_code == 401
    assert root.is_dir() and alice.get(f"/v1/runs/{rid}").status_code == 200

    assert alice.request("DELETE", f"/v1/runs/{rid}").status_code == 204
    assert alice.get(f"/v1/runs/{rid}").status_code == 404
    assert not root.exists()
    assert (app_server.data_dir / "local-runs").is_dir()  # the other runs' parent stays
    assert alice.request("DELETE", f"/v1/runs/{rid}").status_code == 404


def test_a_user_may_not_delete_its_scheduled_run_an_operator_deletes_any(
        app_server: AppServer) -> None:
    op = admin(app_server)
    alice = Api(app_server, op.token("alice", "user"))
    run = alice.submit("queued-job")
    alice.ok("POST", f"/v1/runs/{run['id']}/stop", json={})  # a queued run: cancelled
    r = alice.request("DELETE", f"/v1/runs/{run['id']}")
    assert r.status_code == 403
    message = error_of(r)["message"]
    assert "users delete only their own local runs" in message and "'agent'" in message
    assert op.request("DELETE", f"/v1/runs/{run['id']}").status_code == 204

    started = start_local(alice, "someone-elses")
    end(alice, started)
    root = files_of(app_server, started["run"]["id"])
    assert op.request("DELETE", f"/v1/runs/{started['run']['id']}").status_code == 204
    assert not root.exists()


def test_deleting_never_reaches_outside_the_run_folder(app_server: AppServer,
                                                       tmp_path: Path) -> None:
    """The folder is made from the run id, never from a stored path (the owner writes
    ``workdir``); a link in its place, or inside it, is not followed."""
    op = admin(app_server)
    alice = Api(app_server, op.token("alice", "user"))
    outside = tmp_path / "outside"
    (outside / "keep").mkdir(parents=True)
    (outside / "keep" / "precious.txt").write_text("mine")

    # A stored work dir naming a folder elsewhere: that folder stays.
    hostile = alice.ok("POST", "/v1/runs", 201, json={
        "name": "hostile", "executor": "local", "host_id": "laptop", "workdir": str(outside)})
    end(alice, hostile)
    assert alice.ok("GET", f"/v1/runs/{hostile['run']['id']}")["workdir"] == str(outside)
    root = files_of(app_server, hostile["run"]["id"])
    (root / "escape").symlink_to(outside / "keep")  # a link inside the run's folder
    assert alice.request("DELETE", f"/v1/runs/{hostile['run']['id']}").status_code == 204
    assert not root.exists()
    assert (outside / "keep" / "precious.txt").read_text() == "mine"

    # A link where the run's folder would be: the link goes, its target stays.
    linked = start_local(alice, "linked")
    end(alice, linked)
    link = app_server.data_dir / "local-runs" / linked["run"]["id"]
    link.symlink_to(outside)
    assert alice.request("DELETE", f"/v1/runs/{linked['run']['id']}").status_code == 204
    assert not link.is_symlink() and not link.exists()
    assert (outside / "keep" / "precious.txt").read_text() == "mine"


def test_remove_local_run_refuses_ids_that_are_not_one_folder_name(tmp_path: Path) -> None:
    data = tmp_path / "data"
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "f").write_text("x")
    (data / "local-runs").mkdir(parents=True)
    for bad in ("..", "../victim", "a/b", "", ".", "x" * 41, "abc\x00", "ab c"):
        assert local.local_run_dir(data, bad) is None
        assert local.remove_local_run(data, bad) is False
    assert (victim / "f").read_text() == "x"
    assert local.remove_local_run(data, "0190aa") is False  # nothing there: nothing done
    (data / "local-runs" / "0190aa").write_text("a file, not a run folder")
    assert local.remove_local_run(data, "0190aa") is False
    assert (data / "local-runs" / "0190aa").is_file()
