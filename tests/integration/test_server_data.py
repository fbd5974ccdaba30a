"""Metrics, logs, artifacts, blobs and checkpoints over HTTP."""

from __future__ import annotations

import concurrent.futures
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..support.app_server import AppServer
from ..support.server_api import Api, admin, error_of, sha


@pytest.fixture
def api(app_server):  # type: ignore[no-untyped-def]
    client = admin(app_server)
    yield client
    client.close()


def running(api: Api, name: str = "r", **body: Any) -> tuple[str, str, str]:
    """A run claimed by box-1: (run id, attempt id, lease)."""
    run = api.submit(name, **body)
    claim = api.claim("box-1")
    assert claim and claim["run"]["id"] == run["id"]
    return run["id"], claim["attempt"]["id"], claim["lease"]


def upload(api: Api, run_id: str, aid: str, lease: str, name: str, data: bytes,
           digest: str | None = None, kind: str = "file") -> httpx.Response:
    return api.request("PUT", f"/v1/runs/{run_id}/artifacts/{name}",
                       params={"attempt_id": aid, "kind": kind}, content=data,
                       headers={"X-Content-SHA256": digest or sha(data),
                                "X-Runyard-Lease": lease})


def blob_files(server: AppServer) -> list[str]:
    root = server.data_dir / "artifacts"
    return sorted(p.name for p in Path(root).rglob("*") if p.is_file()
                  and len(p.name) == 64)


def test_metrics_roundtrip_special_values_and_series(api: Api) -> None:
    rid, aid, lease = running(api)
    points = [{"step": s, "tag": "loss", "value": 1.0 / (s + 1)} for s in range(1000)]
    points += [{"step": 5, "tag": "acc", "value": "NaN", "at": "2026-01-01T00:00:00.000Z"},
               {"step": 6, "tag": "acc", "value": "Infinity"}]
    out = api.ok("POST", f"/v1/runs/{rid}/metrics",
                 json={"attempt_id": aid, "lease": lease, "points": points})
    assert out["written"] == 1002
    # Idempotent: the same (attempt, tag, step) again changes nothing.
    api.ok("POST", f"/v1/runs/{rid}/metrics",
           json={"attempt_id": aid, "lease": lease, "points": points[:10]})
    tags = {t["tag"]: t for t in api.ok("GET", f"/v1/runs/{rid}/metrics/tags")["items"]}
    assert tags["loss"]["count"] == 1000 and tags["loss"]["last_step"] == 999
    assert tags["acc"]["last_value"] == "Infinity"
    page = api.ok("GET", f"/v1/runs/{rid}/metrics", params={"tag": "acc"})
    assert [p["value"] for p in page["items"]] == ["NaN", "Infinity"]
    assert page["items"][0]["at"] == "2026-01-01T00:00:00.000Z" and page["items"][0]["attempt"] == 1
    page = api.ok("GET", f"/v1/runs/{rid}/metrics", params={"tag": "loss", "limit": 400})
    assert len(page["items"]) == 400 and page["next_after_step"] == 399
    page = api.ok("GET", f"/v1/runs/{rid}/metrics",
                  params={"tag": "loss", "after_step": 399, "limit": 1000})
    assert page["items"][0]["step"] == 400 and page["next_after_step"] is None
    series = api.ok("GET", f"/v1/runs/{rid}/metrics/loss/series", params={"points": 10})
    assert series["total"] == 1000 and series["tag"] == "loss"
    assert series["points"][0]["step"] == 0 and series["points"][-1]["step"] == 999
    assert len(series["points"]) <= 11
    ranged = api.ok("GET", f"/v1/runs/{rid}/metrics/loss/series",
                    params={"points": 5, "min_step": 100, "max_step": 199})
    assert ranged["total"] == 100 and ranged["points"][-1]["step"] == 199


def test_a_retry_reads_as_one_series_of_its_newest_points(api: Api) -> None:
    """Attempt 2 logs steps 0..49 again: the listing and the series show each step once, as
    attempt 2 logged it; ``attempt=1`` still lists the first attempt's points."""
    rid, aid, lease = running(api, max_attempts=1)
    api.ok("POST", f"/v1/runs/{rid}/metrics", json={"attempt_id": aid, "lease": lease, "points": [
        {"step": s, "tag": "loss", "value": float(s)} for s in range(100)]})
    api.ok("POST", f"/v1/attempts/{aid}/fail", json={"lease": lease, "reason": "user_error"})
    api.ok("POST", f"/v1/runs/{rid}/requeue", json={})
    claim = api.claim("box-1")
    assert claim and claim["attempt"]["number"] == 2
    api.ok("POST", f"/v1/runs/{rid}/metrics", json={
        "attempt_id": claim["attempt"]["id"], "lease": claim["lease"],
        "points": [{"step": s, "tag": "loss", "value": 500.0 + s} for s in range(50)]})
    items = api.ok("GET", f"/v1/runs/{rid}/metrics", params={"tag": "loss"})["items"]
    assert len(items) == 100
    assert [(p["step"], p["attempt"], p["value"]) for p in items[:50]] == [
        (s, 2, 500.0 + s) for s in range(50)]
    assert all(p["attempt"] == 1 for p in items[50:])
    series = api.ok("GET", f"/v1/runs/{rid}/metrics/loss/series", params={"points": 1})
    assert series["total"] == 100
    assert [(b["count"], b["min"], b["max"], b["last"]) for b in series["points"]][-1] == (
        100, 50.0, 549.0, 99.0)
    old = api.ok("GET", f"/v1/runs/{rid}/metrics", params={"tag": "loss", "attempt": 1})
    assert [(p["step"], p["value"]) for p in old["items"]] == [(s, float(s)) for s in range(100)]
    r = api.get(f"/v1/runs/{rid}/metrics", params={"attempt": 0})
    assert r.status_code == 422


@pytest.mark.parametrize("point, field", [
    ({"step": -1, "tag": "x", "value": 1}, "points[0].step"),
    ({"step": 1, "tag": "", "value": 1}, "points[0].tag"),
    ({"step": 1, "tag": "x", "value": "lots"}, "points[0].value"),
    ({"step": 1, "tag": "x"}, "points[0].value"),
    ({"step": 1, "tag": "x", "value": 1, "at": "noon"}, "points[0].at"),
    ({"step": 1, "tag": "x", "value": 1, "extra": 1}, "points[0].extra"),
])
def test_bad_metric_points(api: Api, point: dict[str, Any], field: str) -> None:
    rid, aid, lease = running(api)
    r = api.post(f"/v1/runs/{rid}/metrics", {"attempt_id": aid, "lease": lease,
                                             "points": [point]})
    assert r.status_code == 422, r.text
    assert error_of(r)["field"] == field


def test_metrics_are_fenced(api: Api) -> None:
    rid, aid, lease = running(api)
    r = api.post(f"/v1/runs/{rid}/metrics", {"attempt_id": aid, "lease": "stale" * 8,
                                             "points": [{"step": 1, "tag": "x", "value": 1}]})
    assert r.status_code == 409
    other = api.submit("other")
    r = api.post(f"/v1/runs/{other['id']}/metrics",
                 {"attempt_id": aid, "lease": lease, "points": []})
    assert r.status_code == 409 and "does not belong" in error_of(r)["message"]
    assert api.ok("GET", f"/v1/runs/{rid}/metrics/tags")["items"] == []


def test_logs_append_idempotent_and_read(api: Api) -> None:
    rid, aid, lease = running(api)
    chunks = [{"stream": "stdout", "offset": 0, "data": "hello "},
              {"stream": "stdout", "offset": 6, "data": "world\n"},
              {"stream": "stderr", "offset": 0, "data": "warn\n"}]
    api.ok("POST", f"/v1/attempts/{aid}/logs", json={"lease": lease, "chunks": chunks})
    api.ok("POST", f"/v1/attempts/{aid}/logs", json={"lease": lease, "chunks": chunks[:1]})
    out = api.ok("GET", f"/v1/runs/{rid}/logs")
    assert out == {"data": "hello world\n", "offset": 0, "next_offset": 12, "attempt": 1,
                   "stream": "stdout"}
    out = api.ok("GET", f"/v1/runs/{rid}/logs", params={"stream": "stderr", "attempt": 1})
    assert out["data"] == "warn\n"
    part = api.ok("GET", f"/v1/runs/{rid}/logs", params={"offset": 6, "limit_bytes": 3})
    assert part["data"] == "wor" and part["next_offset"] == 9
    r = api.post(f"/v1/attempts/{aid}/logs",
                 {"lease": lease, "chunks": [{"stream": "stdin", "offset": 0, "data": "x"}]})
    assert r.status_code == 422 and error_of(r)["field"] == "chunks[0].stream"
    assert api.get(f"/v1/runs/{rid}/logs", params={"stream": "x"}).status_code == 422


def test_artifacts_dedupe_download_and_delete(api: Api) -> None:
    server = api.server
    data = os.urandom(300_000)
    rid1, aid1, lease1 = running(api, "a")
    out = api.ok("PUT", f"/v1/runs/{rid1}/artifacts/model/weights.bin", 201,
                 params={"attempt_id": aid1}, content=data,
                 headers={"X-Content-SHA256": sha(data), "X-Runyard-Lease": lease1})
    assert out["sha256"] == sha(data) and out["size"] == len(data) and out["name"] == \
        "model/weights.bin"
    api.ok("POST", f"/v1/attempts/{aid1}/complete", json={"lease": lease1})
    rid2, aid2, lease2 = running(api, "b")
    assert upload(api, rid2, aid2, lease2, "copy.bin", data).status_code == 201
    assert upload(api, rid2, aid2, lease2, "own.bin", b"unique").status_code == 201
    assert blob_files(server) == sorted([sha(data), sha(b"unique")])  # stored once
    listed = api.ok("GET", f"/v1/runs/{rid2}/artifacts")["items"]
    assert {a["name"] for a in listed} == {"copy.bin", "own.bin"}
    got = api.get(f"/v1/blobs/{sha(data)}")
    assert got.status_code == 200 and got.content == data
    assert api.get(f"/v1/blobs/{'0' * 64}").status_code == 404
    assert api.get("/v1/blobs/..%2F..%2Fetc").status_code in (404, 422)
    api.ok("POST", f"/v1/attempts/{aid2}/complete", json={"lease": lease2})
    # Deleting run 1 keeps the shared blob; deleting run 2 removes both.
    assert api.request("DELETE", f"/v1/runs/{rid1}").status_code == 204
    assert blob_files(server) == sorted([sha(data), sha(b"unique")])
    assert api.request("DELETE", f"/v1/runs/{rid2}").status_code == 204
    assert blob_files(server) == []
    assert api.get(f"/v1/blobs/{sha(data)}").status_code == 404


def test_artifact_refusals_keep_nothing(tmp_path: Path) -> None:
    server = AppServer(tmp_path / "s", max_upload_mb=0.1).start()
    api = admin(server)
    try:
        rid, aid, lease = running(api)
        r = upload(api, rid, aid, lease, "x.bin", b"abc", digest=sha(b"abd"))
        assert r.status_code == 400 and error_of(r)["type"] == "ChecksumMismatch"
        big = os.urandom(200_000)
        r = upload(api, rid, aid, lease, "big.bin", big)
        assert r.status_code == 413 and error_of(r)["type"] == "TooLarge"

        def chunked() -> Any:  # no Content-Length: the limit is enforced while streaming
            for i in range(0, len(big), 10_000):
                yield big[i:i + 10_000]

        r = api.request("PUT", f"/v1/runs/{rid}/artifacts/big.bin",
                        params={"attempt_id": aid}, content=chunked(),
                        headers={"X-Content-SHA256": sha(big), "X-Runyard-Lease": lease})
        assert r.status_code == 413
        for name in ("../escape", "a/../../b", "/abs", "a\\b", "a//b", ".", "..", "x\x00"):
            # Percent-encoded, so no client or proxy normalises the path before the server.
            encoded = "".join(f"%{b:02X}" for b in name.encode())
            r = upload(api, rid, aid, lease, encoded, b"x")
            assert r.status_code == 422, (name, r.text)
            assert error_of(r)["field"] == "name"
        r = upload(api, rid, aid, lease, "x.bin", b"x", digest="XYZ")
        assert r.status_code == 422 and error_of(r)["field"] == "X-Content-SHA256"
        r = upload(api, rid, aid, "not-the-lease", "x.bin", b"x")
        assert r.status_code == 409
        r = upload(api, rid, aid, lease, "x.bin", b"x", kind="weights")
        assert r.status_code == 422
        assert blob_files(server) == []
        assert api.ok("GET", f"/v1/runs/{rid}/artifacts")["items"] == []
        leftovers = [p for p in (server.data_dir / "artifacts").rglob("*") if p.is_file()]
        assert leftovers == []
    finally:
        api.close()
        server.stop()


def test_concurrent_uploads_of_one_blob(api: Api) -> None:
    rid, aid, lease = running(api)
    data = os.urandom(2_000_000)

    def put(i: int) -> int:
        with api.server.client(timeout=60,
                               headers={"Authorization": f"Bearer {api.secret}"}) as c:
            return c.put(f"/v1/runs/{rid}/artifacts/copy-{i}.bin", params={"attempt_id": aid},
                         content=data, headers={"X-Content-SHA256": sha(data),
                                                "X-Runyard-Lease": lease}).status_code

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        assert list(pool.map(put, range(6))) == [201] * 6
    assert blob_files(api.server) == [sha(data)]
    assert len(api.ok("GET", f"/v1/runs/{rid}/artifacts")["items"]) == 6
    assert api.get(f"/v1/blobs/{sha(data)}").content == data


def test_checkpoints_and_retention(api: Api) -> None:
    rid, aid, lease = running(api, config={"runyard.keep_last_checkpoints": 1,
                                           "runyard.keep_best_checkpoints": 1,
                                           "runyard.checkpoint_metric": "loss"})
    losses = {100: 0.5, 200: 0.2, 300: 0.4, 400: 0.3}
    for step, loss in losses.items():
        blob = f"ckpt-{step}".encode()
        assert upload(api, rid, aid, lease, f"ckpt/{step}.pt", blob,
                      kind="checkpoint").status_code == 201
        out = api.ok("POST", f"/v1/attempts/{aid}/checkpoints", 201, json={
            "lease": lease, "step": step, "status": "complete", "name": f"ckpt/{step}.pt",
            "sha256": sha(blob), "metrics": {"loss": loss}})
        assert out["size"] == len(blob)
    kept = api.ok("GET", f"/v1/runs/{rid}/checkpoints")["items"]
    assert [c["step"] for c in kept] == [200, 400]  # best loss, and the last one
    api.ok("POST", f"/v1/attempts/{aid}/checkpoints", 201,
           json={"lease": lease, "step": 500, "status": "incomplete"})
    r = api.post(f"/v1/attempts/{aid}/checkpoints",
                 {"lease": lease, "step": 600, "status": "complete", "sha256": "a" * 64})
    assert r.status_code == 422 and error_of(r)["field"] == "sha256"
    r = api.post(f"/v1/attempts/{aid}/checkpoints",
                 {"lease": lease, "step": 600, "status": "complete"})
    assert r.status_code == 422 and error_of(r)["field"] == "sha256"
    r = api.post(f"/v1/attempts/{aid}/checkpoints",
                 {"lease": lease, "step": 600, "status": "done"})
    assert r.status_code == 422 and error_of(r)["field"] == "status"
    events = api.ok("GET", f"/v1/runs/{rid}/events", params={"limit": 1000})["items"]
    assert sum(e["kind"] == "checkpoint" for e in events) == 5


def test_metrics_body_errors_name_the_field(app_server) -> None:  # type: ignore[no-untyped-def]
    """The metrics route checks its body by hand (a hot path): each mistake is still a 4xx
    naming the field, and nothing of the batch is written."""
    api = admin(app_server)
    run = api.submit("bad-metrics")
    claim = api.claim("box-1")
    assert claim is not None
    rid, base = run["id"], {"attempt_id": claim["attempt"]["id"], "lease": claim["lease"]}
    good = {"step": 1, "tag": "loss", "value": 0.5}
    cases = [
        ([1, 2], "body"), ({**base, "extra": 1}, "extra"), ({"lease": "x"}, "attempt_id"),
        ({**base, "points": {}}, "points"), ({**base, "points": [good, 3]}, "points[1]"),
        ({**base, "points": [good, {**good, "attempt": 2}]}, "points[1].attempt"),
        ({**base, "points": [good, {**good, "step": -1}]}, "points[1].step"),
        ({**base, "points": [good, {**good, "value": "high"}]}, "points[1].value"),
        ({**base, "points": [good, {**good, "at": "yesterday"}]}, "points[1].at"),
        ({**base, "rows": [[1, None, {"loss": 1.0}], [2, None]]}, "rows[1]"),
        ({**base, "rows": [[1, None, {"loss": 1.0}], [2, None, {"loss": "high"}]]},
         "rows[1][2].loss"),
        ({**base, "rows": [[1, "noon", {"loss": 1.0}]]}, "rows[0][1]"),
        ({**base, "points": [good], "rows": [[-1, None, {"loss": 1.0}]]}, "rows[0][0]"),
        ({**base, "points": [{**good, "tag": ""}]}, "points[0].tag"),
        # The columns form is not taken (any more): refused by name, not as an unknown field.
        ({**base, "columns": {"step": [1], "values": {"loss": [1.0]}}}, "columns"),
    ]
    for body, field in cases:
        r = api.post(f"/v1/runs/{rid}/metrics", body)
        assert r.status_code == 422 and error_of(r)["field"] == field, (body, r.text)
        if field == "columns":
            assert "points or rows" in error_of(r)["message"]
    r = api.post(f"/v1/runs/{rid}/metrics", content=b"{not json",
                 headers={"content-type": "application/json"})
    assert r.status_code == 422 and error_of(r)["field"] == "body"
    # Integers past 64 bits (orjson reads them as floats) and NaN literals (orjson refuses
    # them; Python's json reads them): the checks after parsing still decide.
    lead = b'{"attempt_id": "%s", "lease": "%s", "points": ' % (
        base["attempt_id"].encode(), base["lease"].encode())
    r = api.post(f"/v1/runs/{rid}/metrics", content=lead + b'[{"step": 1, "tag": "loss", '
                 b'"value": 0.5}, {"step": 99999999999999999999, "tag": "loss", "value": 1}]}',
                 headers={"content-type": "application/json"})
    assert r.status_code == 422 and error_of(r)["field"] == "points[1].step", r.text
    assert api.ok("GET", f"/v1/runs/{rid}/metrics/tags")["items"] == []
    r = api.post(f"/v1/runs/{rid}/metrics", content=lead + b'[{"step": 7, "tag": "nan", '
                 b'"value": NaN}]}', headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    assert api.ok("GET", f"/v1/runs/{rid}/metrics", params={"tag": "nan"})["items"][0][
        "value"] == "NaN"
    ok = api.ok("POST", f"/v1/runs/{rid}/metrics", json={
        **base, "points": [{**good, "at": "2026-01-01T00:00:00Z"}],
        "rows": [[2, 1767225600.0, {"loss": "NaN", "acc": 1}]]})
    assert ok["written"] == 3
    # Rows sharing an ISO time (parsed once), then another one, then seconds again.
    times = ["2026-01-01T00:00:05Z", "2026-01-01T00:00:05Z", "2026-01-01T00:00:06.250Z",
             1767225601.0, "2026-01-01T00:00:06.250Z"]
    api.ok("POST", f"/v1/runs/{rid}/metrics", json={
        **base, "rows": [[10 + i, t, {"t": float(i)}] for i, t in enumerate(times)]})
    got = api.ok("GET", f"/v1/runs/{rid}/metrics", params={"tag": "t"})["items"]
    assert [p["at"][:23] for p in got] == ["2026-01-01T00:00:05.000", "2026-01-01T00:00:05.000",
                                           "2026-01-01T00:00:06.250", "2026-01-01T00:00:01.000",
                                           "2026-01-01T00:00:06.250"]
    # Each point is counted; more than 100,000 points is a 413 and nothing is written.
    counted = _ingested(api)
    ok = api.ok("POST", f"/v1/runs/{rid}/metrics", json={**base, "rows": [
        [20, 1767225600.0, {"c": 0.5, "d": 1}], [22, 1767225602.0, {"c": "Infinity", "d": 3}]]})
    assert ok["written"] == 4 and _ingested(api) == counted + 4
    got = api.ok("GET", f"/v1/runs/{rid}/metrics", params={"tag": "c"})["items"]
    assert [(p["step"], p["value"], p["at"][:19]) for p in got] == [
        (20, 0.5, "2026-01-01T00:00:00"), (22, "Infinity", "2026-01-01T00:00:02")]
    r = api.post(f"/v1/runs/{rid}/metrics", {**base, "rows": [
        [s, 1767225600.0, {"e": 1.0, "f": 1.0}] for s in range(50_001)]})
    assert r.status_code == 413 and error_of(r)["type"] == "TooLarge"
    tags = {t["tag"] for t in api.ok("GET", f"/v1/runs/{rid}/metrics/tags")["items"]}
    assert not tags & {"e", "f"}
    api.close()


def _ingested(api: Api) -> float:
    """The server's count of ingested points, from its Prometheus endpoint."""
    for line in api.get("/metrics").text.splitlines():
        if line.startswith("runyard_metric_points_ingested_total "):
            return float(line.split()[1])
    raise AssertionError("no runyard_metric_points_ingested_total in /metrics")


def test_metrics_hot_path_refuses_and_counts_like_any_route(app_server) -> None:  # type: ignore[no-untyped-def]
    """``POST /v1/runs/{id}/metrics`` is answered in front of FastAPI: it still refuses a
    missing, bad or under-privileged token (before reading the body), a user's post to
    another's run, and is counted by route template in ``/metrics``."""
    api = admin(app_server)
    rid, aid, lease = running(api, "hot")
    body = {"attempt_id": aid, "lease": lease, "points": [{"step": 1, "tag": "x", "value": 1}]}
    url = f"/v1/runs/{rid}/metrics"
    anon = Api(app_server, None)
    r = anon.post(url, json=body)
    assert r.status_code == 401 and error_of(r)["type"] == "AuthError"
    assert r.headers["www-authenticate"] == "Bearer"
    r = anon.post(url, content=b"{not json", headers={"Authorization": "Bearer ry_nope" * 3})
    assert r.status_code == 401, r.text
    viewer = Api(app_server, api.token("hot-viewer", "viewer"))
    r = viewer.post(f"/v1/runs/{rid}/metrics", body)
    assert r.status_code == 403 and "report for an attempt" in error_of(r)["message"]
    user = Api(app_server, api.token("hot-user", "user"))
    r = user.post(f"/v1/runs/{rid}/metrics", body)
    assert r.status_code == 403 and "belongs to" in error_of(r)["message"]
    r = api.post(f"/v1/runs/{rid}/metrics", body)
    assert r.status_code == 200 and r.json() == {"written": 1}
    # Other methods and paths under it go to their own routes.
    assert api.get(f"/v1/runs/{rid}/metrics", params={"tag": "x"}).json()["items"][0][
        "value"] == 1.0
    assert api.post(f"/v1/runs/{rid}/metrics/extra", body).status_code in (404, 405)
    exposition = anon.get("/metrics").text
    counted = [line for line in exposition.splitlines()
               if line.startswith("runyard_http_requests_total{")
               and 'route="/v1/runs/{run_id}/metrics"' in line and 'method="POST"' in line]
    by_status = {line.split('status="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
                 for line in counted}
    assert by_status.get("200", 0) >= 1 and by_status.get("401", 0) >= 2
    assert by_status.get("403", 0) >= 2
    viewer.close()
    user.close()
    anon.close()


def test_metrics_hot_path_reads_chunked_and_empty_bodies(app_server) -> None:  # type: ignore[no-untyped-def]
    """The hot path reads its body itself: a body sent in pieces (chunked transfer) arrives
    whole, and an empty one is a 422 naming the body."""
    import json

    api = admin(app_server)
    rid, aid, lease = running(api, "hot-chunks")
    text = json.dumps({"attempt_id": aid, "lease": lease, "points": [
        {"step": s, "tag": "x", "value": float(s)} for s in range(2000)]}).encode()

    def pieces():  # type: ignore[no-untyped-def]
        for i in range(0, len(text), 7000):
            yield text[i:i + 7000]

    r = api.request("POST", f"/v1/runs/{rid}/metrics", content=pieces(),
                    headers={"content-type": "application/json"})
    assert r.status_code == 200 and r.json() == {"written": 2000}, r.text
    tags = api.ok("GET", f"/v1/runs/{rid}/metrics/tags")["items"]
    assert tags[0]["count"] == 2000 and tags[0]["last_step"] == 1999
    r = api.request("POST", f"/v1/runs/{rid}/metrics", content=b"",
                    headers={"content-type": "application/json"})
    assert r.status_code == 422 and error_of(r)["field"] == "body"
