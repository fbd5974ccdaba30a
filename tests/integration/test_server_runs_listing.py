"""``GET /v1/runs`` on both dialects: several values of each filter, tags and labels, a sort
of several keys, and keyset pages (cursor) that walk every run exactly once under any sort,
however many runs share their sort values."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterator
from typing import Any

import pytest

from runyard.store import open_store

from ..support.app_server import AppServer
from ..support.server_api import Api, admin, error_of


@pytest.fixture
def api(dialect_app: AppServer) -> Iterator[Api]:
    client = admin(dialect_app)
    yield client
    client.close()


def _ids(api: Api, **params: Any) -> list[str]:
    return [r["id"] for r in api.ok("GET", "/v1/runs", params={"limit": 1000, **params})["items"]]


def _seed(api: Api, db_url: str, n: int = 36) -> list[dict[str, Any]]:
    """``n`` runs whose sort values tie in heaps: 3 projects, 2 names, 2 versions, 3
    created_at values, ended_at NULL for a third of them."""
    made = []
    for i in range(n):
        made.append(api.submit(f"n{i % 2}", project=f"p{i % 3}", version=f"v{i % 2}",
                               priority=i % 2, tags=["all", f"t{i % 3}"],
                               constraints={"labels": {"pool": f"l{i % 2}"}}))
    store = open_store(db_url, upgrade=False)
    try:
        with store.transaction() as tx:
            for i, run in enumerate(made):
                tx.update_run(run["id"], {"created_at": 1000.0 + i % 3,
                                          "ended_at": None if i % 3 == 0 else 50.0 + i % 4})
    finally:
        store.close()
    return made


def _walk(api: Api, sort: list[str], limit: int, **params: Any) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    cursor = None
    for _ in range(200):
        page = api.ok("GET", "/v1/runs", params={"sort": sort, "limit": limit, **params,
                                                  **({"cursor": cursor} if cursor else {})})
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen
        assert len(page["items"]) == limit
    raise AssertionError("the pages never ended")


def _key(sort: list[str], run: dict[str, Any]) -> tuple[Any, ...]:
    """A Python sort key for ``run`` under ``sort`` (NULLs last both ways), id last."""
    out: list[Any] = []
    keys = [s.split(":") for s in sort]
    if keys[-1][0] != "id":
        keys.append(["id", keys[-1][1]])
    for name, direction in keys:
        v = run[name]
        desc = direction == "desc"
        if v is None:
            out += [True, 0]
        elif isinstance(v, str):
            num = [(-b if desc else b) for b in v.encode()] + [math.inf if desc else -math.inf]
            out += [False, num]
        else:
            out += [False, -v if desc else v]
    return tuple(out)


SORTS = [
    ["created_at:desc"],
    ["project:asc", "created_at:desc"],
    ["name:desc", "version:asc", "created_at:asc"],
    ["ended_at:asc"],
    ["ended_at:desc", "project:desc"],
    ["priority:asc", "ended_at:desc", "name:asc"],
    ["id:asc"],
    ["project:asc", "id:desc"],
]


def test_pages_under_every_sort_concatenate_to_the_full_order(api: Api, db_url: str) -> None:
    made = _seed(api, db_url)
    for sort in SORTS:
        full = api.ok("GET", "/v1/runs", params={"sort": sort, "limit": 1000})
        assert full["next_cursor"] is None
        everything = [r["id"] for r in full["items"]]
        assert sorted(everything) == sorted(r["id"] for r in made), sort
        by_id = {r["id"]: r for r in full["items"]}
        # Times as the database holds them (the answer's are ISO text).
        raw = {r["id"]: r for r in _raw_runs(db_url)}
        ordered = sorted(everything, key=lambda i: _key(sort, {**by_id[i], **raw[i]}))
        assert everything == ordered, sort
        for limit in (1, 4, 7):
            walked = [r["id"] for r in _walk(api, sort, limit)]
            assert walked == everything, (sort, limit)


def _raw_runs(db_url: str) -> list[dict[str, Any]]:
    from runyard.store.base import RunFilter

    store = open_store(db_url, upgrade=False)
    try:
        return store.list_runs(RunFilter(), limit=10_000,
                               fields=["id", "created_at", "ended_at", "priority"])
    finally:
        store.close()


def test_a_cursor_survives_changes_to_the_row_it_ends_at(api: Api, db_url: str) -> None:
    _seed(api, db_url, n=9)
    first = api.ok("GET", "/v1/runs", params={"sort": "name:asc", "limit": 4})
    rest = [r["id"] for r in _walk(api, ["name:asc"], 100)][4:]
    # The page's last run is renamed and another deleted-looking change: the next page
    # continues from where the cursor says, not from where the row is now.
    last = first["items"][-1]["id"]
    api.ok("PATCH", f"/v1/runs/{last}", json={"name": "zzz-renamed"})
    after = api.ok("GET", "/v1/runs", params={"sort": "name:asc", "limit": 100,
                                              "cursor": first["next_cursor"]})
    assert [r["id"] for r in after["items"] if r["id"] != last] == rest


def test_several_values_of_each_filter(api: Api, db_url: str) -> None:
    made = _seed(api, db_url, n=12)

    def want(pred: Any) -> list[str]:
        return sorted(r["id"] for r in made if pred(r))

    def got(**params: Any) -> list[str]:
        return sorted(_ids(api, **params))

    assert got(id=[made[0]["id"], made[5]["id"]]) == sorted([made[0]["id"], made[5]["id"]])
    assert got(project=["p0", "p2"]) == want(lambda r: r["project"] in ("p0", "p2"))
    assert got(name_like=["n0", "N1"]) == want(lambda r: True)
    assert got(name_like=["n0"], project=["p1"]) == want(
        lambda r: r["name"] == "n0" and r["project"] == "p1")
    assert got(version=["v1"]) == want(lambda r: r["version"] == "v1")
    assert got(owner=["admin", "nobody"]) == want(lambda r: True)
    assert got(owner=["nobody"]) == []
    assert got(status=["queued", "running"]) == want(lambda r: True)
    assert got(status="completed,failed") == []
    assert got(tag=["t1"]) == want(lambda r: "t1" in r["tags"])
    assert got(tag=["t1", "all"]) == want(lambda r: "t1" in r["tags"])
    assert got(tag=["t1", "t2"]) == []
    assert got(tag=["T1"]) == []  # tags are case-sensitive
    assert got(tag=["t"]) == []  # a whole tag, never a part of one
    assert got(label=["pool=l1"]) == want(lambda r: r["constraints"]["labels"]["pool"] == "l1")
    assert got(label=["pool=l"]) == [] and got(label=["poo=l1"]) == []
    assert got(id_prefix=made[3]["id"]) == [made[3]["id"]]
    assert got(id_prefix=made[3]["id"][:4]) == want(lambda r: r["id"][:4] == made[3]["id"][:4])
    assert got(blueprint=["none-such"]) == []
    assert got(host=["box-9"]) == []


def test_blueprint_and_host_filters(api: Api) -> None:
    api.ok("POST", "/v1/blueprints", 201, json={"name": "bp1", "command": ["python", "-c", "1"]})
    on_bp = api.ok("POST", "/v1/runs", 201, json={"name": "b", "blueprint": "bp1"})
    other = api.submit("c")
    assert _ids(api, blueprint=["bp1"]) == [on_bp["id"]]
    claim = api.claim("box-7")
    assert claim is not None
    assert _ids(api, host=["box-7", "box-8"]) == [claim["run"]["id"]]
    assert other["id"] in _ids(api)


@pytest.mark.parametrize(("params", "field"), [
    ({"sort": "colour:asc"}, "sort"),
    ({"sort": "name:sideways"}, "sort"),
    ({"sort": ["name", "name:desc"]}, "sort"),
    ({"cursor": "not-a-cursor"}, "cursor"),
    ({"cursor": base64.urlsafe_b64encode(b'["name:asc,id:asc",[1,"x"]]').decode()}, "cursor"),
    ({"cursor": base64.urlsafe_b64encode(b'[1,2,3]').decode()}, "cursor"),
    ({"cursor": "x" * 5000}, "cursor"),
    ({"status": "sleeping"}, "status"),
    ({"status": ["queued", "bogus"]}, "status"),
    ({"label": "nokey"}, "label"),
    ({"name_like": "abc\\"}, "name_like"),
    ({"project": "a\x00b"}, "project"),
    ({"tag": [f"t{i}" for i in range(101)]}, "tag"),
    ({"created_after": "yesterday"}, "created_after"),
    ({"limit": 0}, "limit"),
    ({"id_prefix": "ab%"}, "id_prefix"),
    ({"id_prefix": "XYZ"}, "id_prefix"),
])
def test_bad_parameters_are_422_naming_them(shared_admin: Api, params: dict[str, Any],
                                            field: str) -> None:
    r = shared_admin.get("/v1/runs", params=params)
    assert r.status_code == 422, (params, r.text)
    assert error_of(r)["field"] == field, r.text


def test_a_cursor_of_another_sort_is_refused(api: Api, db_url: str) -> None:
    _seed(api, db_url, n=4)
    page = api.ok("GET", "/v1/runs", params={"sort": "name:asc", "limit": 2})
    r = api.get("/v1/runs", params={"sort": "name:desc", "cursor": page["next_cursor"]})
    assert r.status_code == 422 and error_of(r)["field"] == "cursor"
    assert "sort" in error_of(r)["message"]
    # Its values are checked against their columns: a list where a name goes is a 422.
    doc = json.loads(base64.urlsafe_b64decode(page["next_cursor"] + "=="))
    doc[1][0] = ["x"]
    forged = base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()
    r = api.get("/v1/runs", params={"sort": "name:asc", "cursor": forged})
    assert r.status_code == 422 and error_of(r)["field"] == "cursor"


def test_legacy_sort_and_after_id_still_page(api: Api, db_url: str) -> None:
    _seed(api, db_url, n=7)
    everything = _ids(api, sort="-created_at")
    walked: list[str] = []
    after = None
    while True:
        page = api.ok("GET", "/v1/runs", params={"sort": "-created_at", "limit": 3,
                                                  **({"after_id": after} if after else {})})
        walked += [r["id"] for r in page["items"]]
        after = page["next_after_id"]
        if after is None:
            break
    assert walked == everything
