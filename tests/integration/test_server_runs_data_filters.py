"""A run's checkpoints and metric points filtered, sorted and paged, on both dialects:
``GET /v1/runs/{id}/checkpoints`` (step, status, created before/after, sort, limit and
cursor) and ``GET /v1/runs/{id}/metrics`` (several tags, a list of steps, before/after).

The tests share one app of each dialect: each drives its own run on its own host."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from runyard.store import open_store
from runyard.store.schema import checkpoints

from ..support.app_server import AppServer
from ..support.server_api import Api, error_of, sha


@pytest.fixture
def api(shared_admin: Api) -> Api:
    return shared_admin


@pytest.fixture
def db_url(shared_dialect_app: AppServer) -> str:
    url = shared_dialect_app.settings.db_url
    assert url is not None
    return url


def _running(api: Api) -> tuple[str, str, str]:
    run = api.submit("data")
    claim = api.claim(f"box-{secrets.token_hex(4)}")
    assert claim and claim["run"]["id"] == run["id"]
    return run["id"], claim["attempt"]["id"], claim["lease"]


def _checkpoints(api: Api, db_url: str) -> str:
    """A run with checkpoints at steps 0, 10, ..., 110: every third complete, and their
    created_at in three heaps of ties (100, 200, 300)."""
    rid, aid, lease = _running(api)
    for i in range(12):
        body: dict[str, Any] = {"lease": lease, "step": i * 10, "status": "incomplete"}
        if i % 3 == 0:
            blob = f"ckpt-{i}".encode()
            r = api.request("PUT", f"/v1/runs/{rid}/artifacts/ck/{i}.pt",
                            params={"attempt_id": aid, "kind": "checkpoint"}, content=blob,
                            headers={"X-Content-SHA256": sha(blob), "X-Runyard-Lease": lease})
            assert r.status_code == 201, r.text
            body.update(status="complete", name=f"ck/{i}.pt", sha256=sha(blob))
        api.ok("POST", f"/v1/attempts/{aid}/checkpoints", 201, json=body)
    store = open_store(db_url, upgrade=False)
    try:
        with store.engine.begin() as conn:  # type: ignore[attr-defined]
            for i in range(12):
                conn.execute(checkpoints.update()
                             .where(checkpoints.c.run_id == rid, checkpoints.c.step == i * 10)
                             .values(created_at=100.0 * (1 + i % 3)))
    finally:
        store.close()
    return rid


def _steps(api: Api, rid: str, **params: Any) -> list[int]:
    return [c["step"] for c in api.ok("GET", f"/v1/runs/{rid}/checkpoints",
                                      params=params)["items"]]


def test_checkpoint_filters(api: Api, db_url: str) -> None:
    rid = _checkpoints(api, db_url)
    assert _steps(api, rid) == [i * 10 for i in range(12)]
    assert _steps(api, rid, step=[30, 50, 999]) == [30, 50]
    assert _steps(api, rid, step="30,50") == [30, 50]
    assert _steps(api, rid, status="complete") == [0, 30, 60, 90]
    assert _steps(api, rid, status=["complete", "incomplete"]) == [i * 10 for i in range(12)]
    assert _steps(api, rid, created_after=150, created_before=250) == [10, 40, 70, 100]
    assert _steps(api, rid, created_after="1970-01-01T00:04:10Z") == [20, 50, 80, 110]
    # Every complete one was registered at 100 (i % 3 == 0), no incomplete one.
    assert _steps(api, rid, status="incomplete", created_before=150) == []
    assert _steps(api, rid, status="complete", created_before=150) == [0, 30, 60, 90]
    assert _steps(api, rid, sort="step:desc", limit=3) == [110, 100, 90]


@pytest.mark.parametrize("sort", [["created_at:desc"], ["created_at:asc", "step:desc"],
                                  ["step:desc"], ["id:asc"], ["attempt:asc", "created_at:desc"]])
def test_checkpoint_pages_concatenate_to_the_full_order(api: Api, db_url: str,
                                                        sort: list[str]) -> None:
    rid = _checkpoints(api, db_url)
    full = api.ok("GET", f"/v1/runs/{rid}/checkpoints", params={"sort": sort})
    assert full["next_cursor"] is None and len(full["items"]) == 12
    everything = [c["id"] for c in full["items"]]
    walked: list[int] = []
    cursor = None
    while True:
        page = api.ok("GET", f"/v1/runs/{rid}/checkpoints",
                      params={"sort": sort, "limit": 5, **({"cursor": cursor} if cursor else {})})
        walked += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert walked == everything
    key = {"created_at": lambda c: c["created_at"], "step": lambda c: c["step"]}
    if sort[0].startswith(("created_at", "step")):
        name, direction = sort[0].split(":")
        values = [key[name](c) for c in full["items"]]
        assert values == sorted(values, reverse=direction == "desc")


@pytest.mark.parametrize(("params", "field"), [
    ({"status": "done"}, "status"),
    ({"step": "ten"}, "step"),
    ({"step": "-1"}, "step"),
    ({"sort": "size:asc"}, "sort"),
    ({"sort": "step:up"}, "sort"),
    ({"cursor": "garbage"}, "cursor"),
    ({"created_before": "soon"}, "created_before"),
    ({"limit": 10_001}, "limit"),
])
def test_bad_checkpoint_parameters(api: Api, params: dict[str, Any], field: str) -> None:
    rid, _, _ = _running(api)
    r = api.get(f"/v1/runs/{rid}/checkpoints", params=params)
    assert r.status_code == 422, r.text
    assert error_of(r)["field"] == field


def _metrics(api: Api) -> str:
    """Tags a, b, c at steps 0..9, logged at UNIX time 1000 + step."""
    rid, aid, lease = _running(api)
    rows = [[s, 1000 + s, {"a": s, "b": -s, "c": s * 0.5}] for s in range(10)]
    api.ok("POST", f"/v1/runs/{rid}/metrics", json={"attempt_id": aid, "lease": lease,
                                                   "rows": rows})
    return rid


def _points(api: Api, rid: str, **params: Any) -> list[tuple[str, int]]:
    return [(p["tag"], p["step"]) for p in api.ok("GET", f"/v1/runs/{rid}/metrics",
                                                  params=params)["items"]]


def test_metric_filters(api: Api) -> None:
    rid = _metrics(api)
    assert len(_points(api, rid)) == 30
    assert _points(api, rid, tag=["a", "c"], steps=[2, 7]) == [
        ("a", 2), ("a", 7), ("c", 2), ("c", 7)]
    assert _points(api, rid, tag="b", steps="1,3") == [("b", 1), ("b", 3)]
    assert _points(api, rid, steps=[4]) == [("a", 4), ("b", 4), ("c", 4)]
    assert _points(api, rid, tag="a", created_after=1005, created_before=1008) == [
        ("a", 6), ("a", 7)]
    assert _points(api, rid, tag="a", created_after="1970-01-01T00:16:48Z") == [("a", 9)]
    assert _points(api, rid, tag=["zz"]) == []
    # One tag still pages by step as before.
    page = api.ok("GET", f"/v1/runs/{rid}/metrics", params={"tag": "a", "limit": 4})
    assert page["next_after_step"] == 3


def test_metric_pages_over_several_tags(api: Api) -> None:
    rid = _metrics(api)
    everything = _points(api, rid, tag=["a", "b", "c"], limit=1000)
    walked: list[tuple[str, int]] = []
    cursor = None
    while True:
        page = api.ok("GET", f"/v1/runs/{rid}/metrics",
                      params={"tag": ["a", "b", "c"], "limit": 7,
                              **({"cursor": cursor} if cursor else {})})
        walked += [(p["tag"], p["step"]) for p in page["items"]]
        assert page["next_after_step"] is None  # several tags: the cursor pages
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert walked == everything and len(walked) == 30


@pytest.mark.parametrize(("params", "field"), [
    ({"steps": "x"}, "steps"),
    ({"steps": str(2**63)}, "steps"),
    ({"tag": "a" * 65}, "tag"),
    ({"tag": ["a", "b"], "after_step": 3}, "after_step"),
    ({"created_after": "later"}, "created_after"),
    ({"cursor": "@@@"}, "cursor"),
])
def test_bad_metric_parameters(api: Api, params: dict[str, Any], field: str) -> None:
    rid = _metrics(api)
    r = api.get(f"/v1/runs/{rid}/metrics", params=params)
    assert r.status_code == 422, r.text
    assert error_of(r)["field"] == field


def _logs(api: Api, rid: str, **params: Any) -> dict[str, Any]:
    return dict(api.ok("GET", f"/v1/runs/{rid}/logs", params=params))


def test_logs_tail_gives_the_last_lines_and_where_to_follow_from(api: Api) -> None:
    rid, aid, lease = _running(api)
    text = "".join(f"line {i} é\n" for i in range(500))  # 2-byte characters on every line
    raw = text.encode()
    # Chunks cut anywhere (mid-line, mid-character is impossible: the agent cuts text).
    chunks, pos, i = [], 0, 0
    while i < len(text):
        piece = text[i:i + 37]
        chunks.append({"stream": "stdout", "offset": pos, "data": piece})
        pos += len(piece.encode())
        i += 37
    api.ok("POST", f"/v1/attempts/{aid}/logs", json={"lease": lease, "chunks": chunks})
    got = _logs(api, rid, tail=3)
    assert got["data"] == "line 497 é\nline 498 é\nline 499 é\n"
    assert got["next_offset"] == len(raw)
    assert raw[got["offset"]:].decode() == got["data"]
    assert _logs(api, rid, tail=1)["data"] == "line 499 é\n"
    assert _logs(api, rid, tail=10_000)["data"] == text  # more lines than there are
    # A byte budget keeps the end, whole characters only.
    small = _logs(api, rid, tail=400, limit_bytes=50)
    assert text.endswith(small["data"]) and len(small["data"].encode()) <= 50
    # Following from next_offset reads what comes next, as the run page does.
    api.ok("POST", f"/v1/attempts/{aid}/logs", json={"lease": lease, "chunks": [
        {"stream": "stdout", "offset": len(raw), "data": "tail end"}]})
    nxt = _logs(api, rid, offset=got["next_offset"])
    assert nxt["data"] == "tail end" and nxt["offset"] == len(raw)
    assert _logs(api, rid, tail=2)["data"] == "line 499 é\ntail end"
    # An empty stream, and the other stream.
    assert _logs(api, rid, tail=5, stream="stderr") == {
        "data": "", "offset": 0, "next_offset": 0, "attempt": 1, "stream": "stderr"}


def test_logs_tail_stops_at_a_gap(api: Api) -> None:
    rid, aid, lease = _running(api)
    api.ok("POST", f"/v1/attempts/{aid}/logs", json={"lease": lease, "chunks": [
        {"stream": "stdout", "offset": 0, "data": "a\nb\n"},
        {"stream": "stdout", "offset": 10, "data": "x\ny\n"}]})  # bytes 4-9 not here yet
    got = _logs(api, rid, tail=10)
    assert got == {"data": "x\ny\n", "offset": 10, "next_offset": 14, "attempt": 1,
                   "stream": "stdout"}


@pytest.mark.parametrize(("params", "field"), [
    ({"tail": 0}, "tail"), ({"tail": "x"}, "tail"), ({"tail": 5, "offset": 3}, "tail")])
def test_bad_tail(api: Api, params: dict[str, Any], field: str) -> None:
    rid, _, _ = _running(api)
    r = api.get(f"/v1/runs/{rid}/logs", params=params)
    assert r.status_code == 422 and error_of(r)["field"] == field
