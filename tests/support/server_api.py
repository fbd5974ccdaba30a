"""Helpers shared by the server tests (no tests here): HTTP clients per role, run factories."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from .app_server import AppServer
from .live_server import LiveServer
from .thread_server import ThreadServer


def caps(host_id: str = "box-1", **extra: Any) -> dict[str, Any]:
    return {"host_id": host_id, "hostname": host_id, "os": "linux", "arch": "x86_64",
            "cpus": 8, "ram_gib": 32, "gpus": [], "slots": 4, **extra}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Api:
    """An httpx client for one token on a server (a process, or the app in this one)."""

    def __init__(self, server: LiveServer | AppServer, token: str | None) -> None:
        self.server = server
        self.secret = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = server.client(headers=headers)

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.http.request(method, path, **kw)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.get(path, **kw)

    def post(self, path: str, json: Any = None, **kw: Any) -> httpx.Response:
        return self.http.post(path, json=json, **kw)

    def ok(self, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        r = self.http.request(method, path, **kw)
        assert r.status_code == status, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content else None

    # factories
    def token(self, name: str, role: str, hosts: list[str] | None = None) -> str:
        """A new token's secret; ``hosts`` binds a worker token (else its first claim does)."""
        body: dict[str, Any] = {"name": name, "role": role}
        if hosts is not None:
            body["hosts"] = hosts
        out = self.ok("POST", "/v1/tokens", 201, json=body)
        assert out["name"] == name and out["role"] == role
        return str(out["token"])

    def submit(self, name: str = "job", **body: Any) -> dict[str, Any]:
        body.setdefault("command", ["python", "-c", "print(1)"])
        out: dict[str, Any] = self.ok("POST", "/v1/runs", 201, json={"name": name, **body})
        return out

    def claim(self, host_id: str = "box-1", **cap: Any) -> dict[str, Any] | None:
        r = self.post("/v1/workers/claim", {"host_id": host_id, "capabilities": caps(host_id,
                                                                                     **cap)})
        if r.status_code == 204:
            return None
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out


@contextmanager
def shared_server(tmp_path_factory: pytest.TempPathFactory, *, stale_after_s: float = 5
                  ) -> Iterator[ThreadServer]:
    """One server for a whole module (tests that only read or send bad input, or that drive
    their own runs: the UI tests, with a lease long enough for a browser's pace)."""
    server = ThreadServer(tmp_path_factory.mktemp("shared-server"),
                          stale_after_s=stale_after_s).start()
    try:
        yield server
    finally:
        server.stop()


def admin(server: LiveServer | ThreadServer | AppServer) -> Api:
    return Api(server, server.admin_token)


def error_of(r: httpx.Response) -> dict[str, Any]:
    body = r.json()
    assert set(body) == {"error"}, body
    err: dict[str, Any] = body["error"]
    assert {"type", "message", "field", "errors"} <= set(err), err
    return err
