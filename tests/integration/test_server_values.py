"""Values a user sends are shown to every other user: invalid Unicode and pathological
nesting are refused at the edge, so one user cannot break the runs list for all."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from runyard import errors, jsonvalues
from runyard.server.serialize import json_safe

from ..support.app_server import AppServer
from ..support.server_api import Api, admin, error_of

LONE = "\ud800"


@pytest.fixture(scope="module")
def api(shared_app: AppServer) -> Iterator[Api]:
    client = admin(shared_app)
    yield client
    client.close()


def _raw_post(api: Api, path: str, body: Any) -> Any:
    # json.dumps escapes the lone surrogate as "\ud800", which is how a client sends it.
    return api.request("POST", path, content=json.dumps(body).encode(),
                       headers={"Content-Type": "application/json"})


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize("extra, field", [
    ({"config": {"lr": LONE}}, "config"),
    ({"config": {LONE: 1}}, "config"),
    ({"notes": "bad " + LONE}, "notes"),
    ({"name": "x" + LONE}, "name"),
    ({"config": _nested(200)}, "config"),
    ({"config": _nested(600)}, "config"),
    ({"config": {"deep": json.loads("[" * 100 + "]" * 100)}}, "config"),
])
def test_a_hostile_run_is_refused_and_the_list_still_works(api: Api, extra: dict[str, Any],
                                                           field: str) -> None:
    body = {"name": "hostile", "command": ["true"], **extra}
    r = _raw_post(api, "/v1/runs", body)
    assert r.status_code == 422, r.text
    assert error_of(r)["field"] == field
    assert api.get("/v1/runs").status_code == 200


def test_a_progress_message_with_a_lone_surrogate_is_refused(api: Api) -> None:
    run = api.submit("reporter", command=["true"])
    claim = api.claim("values-box")
    assert claim is not None and claim["run"]["id"] == run["id"]
    path = f"/v1/attempts/{claim['attempt']['id']}/progress"
    r = _raw_post(api, path, {"lease": claim["lease"],
                              "snapshot": {"v": 1, "message": "oops " + LONE}})
    assert r.status_code == 422, r.text
    assert error_of(r)["field"] == "snapshot"
    assert api.get(f"/v1/runs/{run['id']}").status_code == 200
    assert api.get("/v1/runs").status_code == 200


def test_hostile_metrics_bodies_are_422_not_500(api: Api) -> None:
    r = api.request("POST", "/v1/runs/nope/metrics", content=b"[" * 100_000 + b"]" * 100_000,
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    r = _raw_post(api, "/v1/runs/nope/metrics",
                  {"attempt_id": "a", "lease": "l", "points": [
                      {"tag": "loss" + LONE, "step": 1, "value": 1.0}]})
    assert r.status_code == 422, r.text
    assert "Unicode" in error_of(r)["message"]


def test_check_names_the_place_and_passes_ordinary_values() -> None:
    jsonvalues.check({"lr": 0.1, "layers": [64, 64], "name": "ünïcødé ✓"}, "config")
    with pytest.raises(errors.ValidationError, match=r"config\.a\.b\[1\]: not valid Unicode"):
        jsonvalues.check({"a": {"b": ["ok", LONE]}}, "config")
    with pytest.raises(errors.ValidationError, match="nested deeper than 3"):
        jsonvalues.check(_nested(4), "config", max_depth=3)
    jsonvalues.check(_nested(3), "config", max_depth=3)


def test_values_already_stored_are_shown_safely_without_recursion() -> None:
    deep: Any = "end"
    for _ in range(50_000):  # far past the interpreter's recursion limit
        deep = [deep]
    out = json_safe({"v": deep, "bad": "x" + LONE, LONE: float("nan"), "n": float("inf")})
    assert out["bad"] == "x\ufffd" and out["\ufffd"] == "NaN" and out["n"] == "Infinity"
    inner = out["v"]
    for _ in range(50_000):
        inner = inner[0]
    assert inner == "end"
