"""``PATCH /v1/runs/{id}`` on both dialects: name, notes and tags change after submission,
by the owner or an operator, checked as at submission and recorded as an event; and
``status_updated_at`` moves with the status only, while ``updated_at`` moves with any write."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ..support.app_server import AppServer
from ..support.server_api import Api, admin, error_of


@pytest.fixture
def op(dialect_app: AppServer) -> Iterator[Api]:
    client = admin(dialect_app)
    yield client
    client.close()


def _events(api: Api, run_id: str) -> list[dict[str, Any]]:
    return list(api.ok("GET", f"/v1/runs/{run_id}/events")["items"])


def test_the_owner_edits_name_notes_and_tags(op: Api, dialect_app: AppServer) -> None:
    alice = Api(dialect_app, op.token("alice", "user"))
    run = alice.submit("first", notes="n", tags=["a"])
    assert run["tags"] == ["a"] and run["notes"] == "n"
    out = alice.ok("PATCH", f"/v1/runs/{run['id']}",
                   json={"name": "second", "notes": "ü" * 10_000, "tags": ["b", "lr=0.1", "b"]})
    assert out["name"] == "second" and out["tags"] == ["b", "lr=0.1"]
    got = op.ok("GET", f"/v1/runs/{run['id']}")
    assert (got["name"], got["notes"], got["tags"]) == ("second", "ü" * 10_000, ["b", "lr=0.1"])
    assert got["updated_at"] > run["updated_at"]
    assert got["status_updated_at"] == run["status_updated_at"]
    edited = [e for e in _events(op, run["id"]) if e["kind"] == "edited"]
    assert len(edited) == 1 and edited[0]["actor"] == "alice"
    assert edited[0]["details"] == {"changed": ["name", "notes", "tags"], "name": "second",
                                    "tags": ["b", "lr=0.1"]}
    # Only what is sent changes; an edit that changes nothing records nothing.
    alice.ok("PATCH", f"/v1/runs/{run['id']}", json={"tags": []})
    alice.ok("PATCH", f"/v1/runs/{run['id']}", json={"tags": []})
    got = op.ok("GET", f"/v1/runs/{run['id']}")
    assert got["tags"] == [] and got["name"] == "second"
    assert len([e for e in _events(op, run["id"]) if e["kind"] == "edited"]) == 2
    # The new name and tags are what the listing filters on.
    assert [r["id"] for r in op.ok("GET", "/v1/runs", params={"name_like": "second"})
            ["items"]] == [run["id"]]


def test_others_may_not_edit_but_operators_may(op: Api, dialect_app: AppServer) -> None:
    alice = Api(dialect_app, op.token("alice", "user"))
    bob = Api(dialect_app, op.token("bob", "user"))
    viewer = Api(dialect_app, op.token("v", "viewer"))
    run = alice.submit("mine")
    r = bob.request("PATCH", f"/v1/runs/{run['id']}", json={"notes": "bob was here"})
    assert r.status_code == 403 and "belongs to 'alice'" in error_of(r)["message"]
    assert viewer.request("PATCH", f"/v1/runs/{run['id']}", json={"notes": "x"}
                          ).status_code == 403
    assert op.ok("PATCH", f"/v1/runs/{run['id']}", json={"notes": "by op"})["notes"] == "by op"
    assert op.request("PATCH", "/v1/runs/nope", json={"notes": "x"}).status_code == 404


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "bad name!"}, "name"),
    ({"name": None}, "name"),
    ({"name": "x" * 201}, "name"),
    ({"notes": "x" * 10_001}, "notes"),
    ({"notes": "nul\x00"}, "notes"),
    ('{"notes": "\\ud800"}', "notes"),  # a lone surrogate, as raw JSON
    ({"notes": 5}, "notes"),
    ({"tags": ["ok", "has space"]}, "tags"),
    ({"tags": ['q"uote']}, "tags"),
    ({"tags": ["x" * 65]}, "tags"),
    ({"tags": [f"t{i}" for i in range(33)]}, "tags"),
    ({"tags": "a"}, "tags"),
    ({"tags": [1]}, "tags"),
    ({"status": "completed"}, "status"),
    ({"owner": "bob"}, "owner"),
])
def test_bad_edits_are_422_naming_the_field_and_change_nothing(
        shared_admin: Api, body: dict[str, Any] | str, field: str) -> None:
    op = shared_admin
    run = op.submit("orig", notes="keep", tags=["keep"])
    kw: dict[str, Any] = ({"content": body.encode(), "headers": {
        "content-type": "application/json"}} if isinstance(body, str) else {"json": body})
    r = op.request("PATCH", f"/v1/runs/{run['id']}", **kw)
    assert r.status_code == 422, r.text
    assert error_of(r)["field"].split("[")[0] == field, r.text  # tags[1]: the bad tag
    got = op.ok("GET", f"/v1/runs/{run['id']}")
    assert (got["name"], got["notes"], got["tags"]) == ("orig", "keep", ["keep"])
    assert [e["kind"] for e in _events(op, run["id"])] == ["status"]


def test_submit_checks_tags_too(op: Api) -> None:
    r = op.post("/v1/runs", {"name": "t", "command": ["true"], "tags": ["no good"]})
    assert r.status_code == 422 and error_of(r)["field"] == "tags[0]"
    r = op.post("/v1/runs", {"name": "t", "command": ["true"], "notes": "a\x00b"})
    assert r.status_code == 422 and error_of(r)["field"] == "notes"


def test_status_updated_at_moves_with_the_status_only(op: Api) -> None:
    run = op.submit("s")
    assert run["status_updated_at"] == run["created_at"]
    claim = op.claim("box-1")
    assert claim is not None and claim["run"]["id"] == run["id"]
    claimed = op.ok("GET", f"/v1/runs/{run['id']}")
    assert claimed["status"] == "claimed"
    assert claimed["status_updated_at"] > run["status_updated_at"]
    lease = {"lease": claim["lease"]}
    att = claim["attempt"]["id"]
    op.ok("POST", f"/v1/attempts/{att}/heartbeat", json={**lease, "running": True})
    running = op.ok("GET", f"/v1/runs/{run['id']}")
    assert running["status"] == "running"
    assert running["status_updated_at"] >= claimed["status_updated_at"]
    # Progress and a second heartbeat write the run but leave its status as it was.
    op.ok("POST", f"/v1/attempts/{att}/progress", json={**lease, "snapshot": {"step": 3}})
    op.ok("POST", f"/v1/attempts/{att}/heartbeat", json={**lease, "running": True})
    later = op.ok("GET", f"/v1/runs/{run['id']}")
    assert later["status_updated_at"] == running["status_updated_at"]
    assert later["updated_at"] >= running["updated_at"]
    # Sorting and a cursor work on it like on any time.
    page = op.ok("GET", "/v1/runs", params={"sort": "status_updated_at:desc", "limit": 1})
    assert page["items"][0]["id"] == run["id"]
