"""Body limits and authentication before the body, against a real server process.

Raw sockets are used where the point is what the server does *before* the body arrives:
an HTTP client library would send the whole body first.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from runyard.server.limits import MIB, BodyLimits

from ..support.live_server import LiveServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("limits") / "server").start()
    yield live
    live.stop()


def _raw(server: LiveServer, head: str, body: bytes = b"", timeout: float = 30.0) -> str:
    """Send a request head (and maybe part of a body) and read the answer's status line and
    body, without ever sending the rest of the declared body."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(head.encode("latin-1") + body)
        data = b""
        while b"\r\n\r\n" not in data or not _complete(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return data.decode("latin-1")


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return True


def test_a_huge_body_without_a_token_is_refused_before_it_is_sent(server: LiveServer) -> None:
    # 200 MiB declared, not a byte of it sent: the answer must come from the header alone.
    answer = _raw(server, "POST /v1/runs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                          f"\r\nContent-Length: {200 * MIB}\r\n\r\n")
    assert answer.startswith("HTTP/1.1 401"), answer
    assert "AuthError" in answer


def test_invalid_json_without_a_token_is_a_401_not_a_422(server: LiveServer) -> None:
    r = httpx.post(f"{server.url}/v1/workers/claim", content=b"{not json",
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "AuthError"


def test_a_bad_token_is_refused_before_the_body(server: LiveServer) -> None:
    answer = _raw(server, "POST /v1/runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ry_nope_"
                          f"nope_nope_nope\r\nContent-Length: {50 * MIB}\r\n\r\n")
    assert answer.startswith("HTTP/1.1 401"), answer


def test_a_declared_length_over_the_limit_is_refused_at_once(server: LiveServer) -> None:
    limit = BodyLimits().control
    answer = _raw(server, f"POST /v1/runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                          f"{server.admin_token}\r\nContent-Type: application/json\r\n"
                          f"Content-Length: {limit + 1}\r\n\r\n")
    assert answer.startswith("HTTP/1.1 413"), answer
    assert "RequestTooLarge" in answer and str(limit) in answer


def test_a_chunked_body_is_cut_off_at_the_limit(server: LiveServer) -> None:
    limit = BodyLimits().control

    def chunks() -> Iterator[bytes]:
        yield b'{"command": ["true"], "config": {"pad": "'
        for _ in range(limit // (64 * 1024) + 2):
            yield b"x" * (64 * 1024)
        yield b'"}}'

    r = httpx.post(f"{server.url}/v1/runs", content=chunks(),
                   headers={**server.headers(), "Content-Type": "application/json"})
    assert r.status_code == 413
    assert r.json()["error"]["type"] == "RequestTooLarge"
    # Nothing was stored.
    listed = httpx.get(f"{server.url}/v1/runs", headers=server.headers()).json()
    assert listed["items"] == []


def test_the_metrics_endpoint_takes_more_than_a_control_call(server: LiveServer) -> None:
    limits = BodyLimits()
    assert limits.for_request("POST", "/v1/runs/r1/metrics") == limits.metrics
    assert limits.for_request("POST", "/v1/attempts/a1/logs") == limits.logs
    assert limits.for_request("PUT", "/v1/runs/r1/artifacts/model.pt") is None  # the route's
    assert limits.for_request("POST", "/v1/manifest/reload") == limits.manifest
    assert limits.for_request("POST", "/v1/runs") == limits.control
    # A body between the control and the metrics limit is read and parsed by the metrics
    # route (which then misses its attempt), not refused as too large.
    body = b'{"points": [' + b",".join(
        b'{"tag": "loss", "step": %d, "value": 0.5}' % i for i in range(60_000)) + b"]}"
    assert limits.control < len(body) < limits.metrics
    r = httpx.post(f"{server.url}/v1/runs/nope/metrics", content=body,
                   headers={**server.headers(), "Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "attempt_id"


def test_requests_within_the_limits_still_work(server: LiveServer) -> None:
    r = httpx.post(f"{server.url}/v1/runs", json={"command": ["true"], "name": "small"},
                   headers=server.headers())
    assert r.status_code == 201, r.text
