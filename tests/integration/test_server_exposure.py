"""What a run shows to other users of a shared server: env values only to the owner,
operators and workers; no page that loads scripts from outside the server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..support.app_server import AppServer
from ..support.server_api import Api, admin


@pytest.fixture(scope="module")
def server(shared_app: AppServer) -> Iterator[Api]:
    client = admin(shared_app)
    yield client
    client.close()


def test_env_values_are_shown_to_the_owner_and_operators_only(server: Api) -> None:
    alice = Api(server.server, server.token("alice", "user"))
    bob = Api(server.server, server.token("bob", "user"))
    viewer = Api(server.server, server.token("watcher", "viewer"))
    run = alice.submit("secretive", env={"WANDB_API_KEY": "k-123", "SEED": "1"})
    rid = run["id"]
    assert run["env"] == {"WANDB_API_KEY": "k-123", "SEED": "1"}
    for who, sees in ((alice, True), (server, True), (bob, False), (viewer, False)):
        one = who.ok("GET", f"/v1/runs/{rid}")
        listed = who.ok("GET", "/v1/runs", params={"fields": "id,env"})["items"]
        (row,) = [r for r in listed if r["id"] == rid]
        assert set(row) == {"id", "env"}
        for shown in (one["env"], row["env"]):
            if sees:
                assert shown == {"WANDB_API_KEY": "k-123", "SEED": "1"}
            else:
                assert shown == {"WANDB_API_KEY": None, "SEED": None}
        full = who.ok("GET", "/v1/runs")["items"]
        assert ("k-123" in str(full)) is sees


def test_no_api_docs_page_loads_scripts_from_a_cdn(server: Api) -> None:
    anonymous = server.server.client()
    assert anonymous.get("/docs").status_code == 404
    assert anonymous.get("/redoc").status_code == 404
    assert anonymous.get("/openapi.json").json()["info"]["title"] == "Runyard"
