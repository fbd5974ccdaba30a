"""Unknown query parameters are refused with a 422 naming them, on every API route, as unknown
body fields are; the declared ones (a route's own and its dependencies') still work."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute

from runyard.server import query, routes_admin, routes_runs

from ..support.app_server import AppServer
from ..support.server_api import Api, admin, error_of


@pytest.fixture(scope="module")
def shared(shared_app: AppServer) -> Iterator[Api]:
    client = admin(shared_app)
    yield client
    client.close()


def test_an_unknown_filter_is_refused_not_ignored(shared: Api) -> None:
    run = shared.submit("query-check")
    r = shared.get("/v1/runs", params={"run_id": run["id"]})
    assert r.status_code == 422, r.text
    err = error_of(r)
    assert err["type"] == "ValidationError" and err["field"] == "run_id"
    assert "unknown query parameter" in err["message"]
    # A declared one still filters; a known one beside an unknown one does not save it.
    assert shared.ok("GET", "/v1/runs", params={"limit": 1})["items"]
    r = shared.get("/v1/runs", params={"limit": 1, "colour": "red"})
    assert r.status_code == 422 and error_of(r)["field"] == "colour"


@pytest.mark.parametrize(("method", "path", "kw"), [
    ("GET", "/v1/health", {}),
    ("GET", "/v1/runs/{rid}", {}),
    ("GET", "/v1/runs/{rid}/events", {}),
    ("GET", "/v1/runs/{rid}/metrics", {}),
    ("GET", "/v1/runs/{rid}/metrics/loss/series", {}),
    ("GET", "/v1/runs/{rid}/logs", {}),
    ("GET", "/v1/workers", {}),
    ("GET", "/v1/queue", {}),
    ("GET", "/metrics", {}),
    ("POST", "/v1/runs", {"json": {"name": "x"}}),
    ("POST", "/v1/runs/{rid}/metrics", {"json": {"attempt_id": "a", "lease": "b"}}),
    ("POST", "/v1/manifest/validate", {"json": {"text": ""}}),
])
def test_every_route_refuses_them(shared: Api, method: str, path: str, kw: dict[str, Any]
                                  ) -> None:
    rid = shared.submit("query-routes")["id"]
    r = shared.request(method, path.format(rid=rid), params={"bogus": "1"}, **kw)
    assert r.status_code == 422, (path, r.text)
    assert error_of(r)["field"] == "bogus"


def test_parameters_of_dependencies_and_aliases_count_as_declared(shared: Api) -> None:
    # ``source`` is read by the manifest routes' body dependency.
    r = shared.request("POST", "/v1/manifest/validate", params={"source": "fleet.toml"},
                       content=b"", headers={"content-type": "text/plain"})
    assert r.status_code != 422 or error_of(r)["field"] != "source", r.text
    routes = {r.path: r for r in [*routes_admin.router.routes, *routes_runs.router.routes]
              if isinstance(r, APIRoute)}
    assert "source" in query.declared(routes["/v1/manifest/validate"])
    assert {"limit", "after_id", "status"} <= query.declared(routes["/v1/runs"])


def test_ui_pages_keep_their_query_strings(shared: Api) -> None:
    assert shared.get("/compare", params={"runs": "a,b"}).status_code == 200
