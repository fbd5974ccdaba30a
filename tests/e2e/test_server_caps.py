"""Caps a hostile or careless user of a shared server runs into: concurrent event streams,
distinct metric tags per run, log chunk size, and the HTTP server's own connection limit.
Against real server processes; raw sockets hold streams open without a client library's
threads."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from runyard.defaults import MAX_TAGS_PER_RUN
from runyard.server.limits import LOG_CHUNK_MAX, SSE_STREAMS_PER_TOKEN, SSE_STREAMS_TOTAL

from ..support.live_server import LiveServer
from ..support.server_api import Api, admin, error_of


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("caps") / "server").start()
    yield live
    live.stop()


@pytest.fixture
def api(server: LiveServer) -> Iterator[Api]:
    client = admin(server)
    yield client
    client.close()


def _open_stream(server: LiveServer, token: str) -> tuple[socket.socket, str]:
    """Open ``GET /v1/events/stream`` on a raw socket; returns it with the answer's head
    (and whatever of the body came with it)."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.sendall((f"GET /v1/events/stream HTTP/1.1\r\nHost: x\r\n"
                  f"Authorization: Bearer {token}\r\n\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    if data.startswith(b"HTTP/1.1 200"):
        while b"connected" not in data:  # the stream is registered once this arrives
            data += sock.recv(65536)
    else:
        length = re.search(rb"content-length: *(\d+)", data, re.I)
        while length and len(data.partition(b"\r\n\r\n")[2]) < int(length.group(1)):
            data += sock.recv(65536)
    return sock, data.decode("latin-1")


def _polls(server: LiveServer) -> float:
    text = httpx.get(f"{server.url}/metrics").text
    found = re.search(r"^runyard_sse_polls_total (\S+)$", text, re.M)
    assert found, "runyard_sse_polls_total missing from /metrics"
    return float(found.group(1))


def _gauge(server: LiveServer, name: str) -> float:
    text = httpx.get(f"{server.url}/metrics").text
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    assert found, f"{name} missing from /metrics"
    return float(found.group(1))


def test_streams_are_capped_per_token_and_share_one_poller(server: LiveServer,
                                                            api: Api) -> None:
    tokens = [api.token(f"viewer-{i}", "viewer") for i in range(
        SSE_STREAMS_TOTAL // SSE_STREAMS_PER_TOKEN + 1)]
    held: list[socket.socket] = []
    try:
        for _ in range(SSE_STREAMS_PER_TOKEN):
            sock, head = _open_stream(server, tokens[0])
            held.append(sock)
            assert head.startswith("HTTP/1.1 200"), head
        sock, head = _open_stream(server, tokens[0])
        sock.close()
        assert head.startswith("HTTP/1.1 429"), head
        body = json.loads(head.partition("\r\n\r\n")[2])
        assert body["error"]["type"] == "TooManyRequests"
        assert "per token" in body["error"]["message"]
        # Other tokens fill the server-wide cap; past it every token is refused.
        for token in tokens[1:]:
            while len(held) < SSE_STREAMS_TOTAL and len(held) % SSE_STREAMS_PER_TOKEN:
                sock, head = _open_stream(server, token)
                held.append(sock)
                assert head.startswith("HTTP/1.1 200"), head
            if len(held) >= SSE_STREAMS_TOTAL:
                break
            sock, head = _open_stream(server, token)
            held.append(sock)
            assert head.startswith("HTTP/1.1 200"), head
        assert len(held) == SSE_STREAMS_TOTAL
        assert _gauge(server, "runyard_sse_subscribers") == SSE_STREAMS_TOTAL
        sock, head = _open_stream(server, tokens[-1])
        sock.close()
        assert head.startswith("HTTP/1.1 429"), head
        assert "server-wide" in json.loads(head.partition("\r\n\r\n")[2])["error"]["message"]
        # One poller for all of them: its polls over a stretch of time are bounded by the
        # poll interval (0.25 s), whatever the number of subscribers.
        before, t0 = _polls(server), time.monotonic()
        time.sleep(2)
        after, elapsed = _polls(server), time.monotonic() - t0
        assert 0 < after - before <= elapsed / 0.25 + 2
    finally:
        for sock in held:
            sock.close()
    # Closed streams free their places.
    deadline = time.time() + 15
    while _gauge(server, "runyard_sse_subscribers") and time.time() < deadline:
        time.sleep(0.1)
    sock, head = _open_stream(server, tokens[0])
    sock.close()
    assert head.startswith("HTTP/1.1 200"), head


def _running(api: Api, name: str) -> tuple[str, str, str]:
    run = api.submit(name)
    claim = api.claim("box-1")
    assert claim and claim["run"]["id"] == run["id"]
    return run["id"], claim["attempt"]["id"], claim["lease"]


def test_distinct_tags_per_run_are_capped(api: Api) -> None:
    rid, aid, lease = _running(api, "many-tags")
    url = f"/v1/runs/{rid}/metrics"
    first = [{"step": 0, "tag": f"t{i:05d}", "value": 1.0} for i in range(MAX_TAGS_PER_RUN - 1)]
    assert api.ok("POST", url, json={"attempt_id": aid, "lease": lease,
                                     "points": first})["written"] == MAX_TAGS_PER_RUN - 1
    # Two new tags would pass the cap: the whole batch is refused, its known tag too.
    over = [{"step": 1, "tag": "t00000", "value": 2.0},
            {"step": 1, "tag": "new-a", "value": 1.0}, {"step": 1, "tag": "new-b", "value": 1.0}]
    r = api.post(url, json={"attempt_id": aid, "lease": lease, "points": over})
    assert r.status_code == 422, r.text
    assert error_of(r)["field"] == "tag" and str(MAX_TAGS_PER_RUN) in error_of(r)["message"]
    page = api.ok("GET", f"/v1/runs/{rid}/metrics", params={"tag": "t00000"})
    assert [p["step"] for p in page["items"]] == [0]
    # Known tags always go in; one new tag reaches the cap exactly.
    rows = [[2, time.time(), {"t00001": 1.0, "new-a": 1.0}]]
    assert api.ok("POST", url, json={"attempt_id": aid, "lease": lease,
                                     "rows": rows})["written"] == 2
    r = api.post(url, json={"attempt_id": aid, "lease": lease,
                            "rows": [[3, time.time(), {"new-b": 1.0}]]})
    assert r.status_code == 422 and error_of(r)["field"] == "tag"
    # The tags endpoint pages by tag.
    seen: list[str] = []
    after: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 4000}
        if after is not None:
            params["after"] = after
        got = api.ok("GET", f"/v1/runs/{rid}/metrics/tags", params=params)
        assert len(got["items"]) <= 4000
        seen += [t["tag"] for t in got["items"]]
        after = got["next_after"]
        if after is None:
            break
    assert len(seen) == MAX_TAGS_PER_RUN and seen == sorted(seen)
    assert "new-a" in seen and "new-b" not in seen


def test_tags_page_limits(api: Api) -> None:
    rid, aid, lease = _running(api, "few-tags")
    api.ok("POST", f"/v1/runs/{rid}/metrics", json={
        "attempt_id": aid, "lease": lease,
        "points": [{"step": 0, "tag": t, "value": 1.0} for t in "abcde"]})
    page = api.ok("GET", f"/v1/runs/{rid}/metrics/tags", params={"limit": 2})
    assert [t["tag"] for t in page["items"]] == ["a", "b"] and page["next_after"] == "b"
    page = api.ok("GET", f"/v1/runs/{rid}/metrics/tags", params={"limit": 2, "after": "d"})
    assert [t["tag"] for t in page["items"]] == ["e"] and page["next_after"] is None
    whole = api.ok("GET", f"/v1/runs/{rid}/metrics/tags")
    assert [t["tag"] for t in whole["items"]] == list("abcde") and whole["next_after"] is None
    assert api.request("GET", f"/v1/runs/{rid}/metrics/tags",
                       params={"limit": 0}).status_code == 422


def test_a_log_chunk_over_its_limit_is_refused(api: Api) -> None:
    rid, aid, lease = _running(api, "loud")
    ok = {"stream": "stdout", "offset": 0, "data": "x" * LOG_CHUNK_MAX}
    big = {"stream": "stdout", "offset": LOG_CHUNK_MAX, "data": "y" * (LOG_CHUNK_MAX + 1)}
    r = api.post(f"/v1/attempts/{aid}/logs", json={"lease": lease, "chunks": [ok, big]})
    assert r.status_code == 422, r.text
    assert error_of(r)["field"] == "chunks[1].data"
    api.ok("POST", f"/v1/attempts/{aid}/logs", json={"lease": lease, "chunks": [ok]})


def test_limit_concurrency_reaches_the_server(tmp_path_factory: pytest.TempPathFactory
                                              ) -> None:
    live = LiveServer(tmp_path_factory.mktemp("conc") / "server",
                      extra_args=["--limit-concurrency", "4"]).start()
    held: list[socket.socket] = []
    try:
        # Open connections count, idle or not: three held streams and the new connection
        # reach the limit of 4, so the next request is answered 503 at once.
        for _ in range(3):
            sock, head = _open_stream(live, live.admin_token)
            held.append(sock)
            assert head.startswith("HTTP/1.1 200"), head
        r = httpx.get(f"{live.url}/v1/health")
        assert r.status_code == 503
        held.pop().close()
        deadline = time.time() + 15
        while httpx.get(f"{live.url}/v1/health").status_code != 200:
            assert time.time() < deadline
            time.sleep(0.1)
    finally:
        for sock in held:
            sock.close()
        live.stop()
