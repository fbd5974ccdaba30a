"""A worker spoken by hand over the worker endpoints, to give runs progress, metrics and logs.

Not a mock: it is a plain HTTP client of the real server's worker API (the agent is built
separately), shared by the client and CLI tests. ``server`` is a LiveServer or an AppServer.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import threading
from collections.abc import Iterator
from typing import Any

CAPS = {"host_id": "sim-1", "hostname": "sim-1", "os": "linux", "arch": "x86_64", "cpus": 4,
        "ram_gib": 8, "gpus": [], "labels": {"zone": "test"}, "slots": 4}


def create_token(server: Any, role: str) -> str:
    """A fresh token of ``role`` made by the admin (POST /v1/tokens)."""
    name = f"{role}-{secrets.token_hex(3)}"
    with server.client(headers=server.headers(), timeout=10) as http:
        r = http.post("/v1/tokens", json={"name": name, "role": role})
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


class SimWorker:
    """Claims one run and reports for it exactly as an agent would."""

    def __init__(self, server: Any, host_id: str = "sim-1", **caps: Any) -> None:
        self.server = server
        self.host_id = host_id
        self.caps = {**CAPS, "host_id": host_id, "hostname": host_id, **caps}
        self.http = server.client(timeout=10, headers={
            "Authorization": f"Bearer {create_token(server, 'worker')}"})
        self.claimed: dict[str, Any] = {}

    def close(self) -> None:
        self.http.close()

    def _post(self, path: str, body: dict[str, Any], status: int = 200) -> Any:
        r = self.http.post(path, json=body)
        assert r.status_code == status, f"{path}: {r.status_code} {r.text}"
        return r.json() if r.content else None

    @property
    def attempt_id(self) -> str:
        return str(self.claimed["attempt"]["id"])

    @property
    def run_id(self) -> str:
        return str(self.claimed["run"]["id"])

    @property
    def lease(self) -> str:
        return str(self.claimed["lease"])

    def claim(self) -> dict[str, Any] | None:
        r = self.http.post("/v1/workers/claim", json={
            "host_id": self.host_id, "capabilities": self.caps, "free_slots": 1})
        assert r.status_code in (200, 204), r.text
        if r.status_code == 204:
            return None
        self.claimed = r.json()
        return self.claimed

    def heartbeat(self, running: bool = True) -> dict[str, Any]:
        return dict(self._post(f"/v1/attempts/{self.attempt_id}/heartbeat",
                               {"lease": self.lease, "running": running}))

    @contextlib.contextmanager
    def keepalive(self, interval: float = 0.5) -> Iterator[None]:
        """Heartbeat in the background (test servers lapse leases after a few seconds)."""
        stop = threading.Event()

        def beat() -> None:
            with self.server.client(timeout=10, headers=dict(self.http.headers)) as http:
                while not stop.wait(interval):
                    http.post(f"/v1/attempts/{self.attempt_id}/heartbeat",
                              json={"lease": self.lease, "running": True})

        thread = threading.Thread(target=beat, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def progress(self, step: int, total: int = 100, **extra: Any) -> None:
        snapshot = {"schema": "runyard.progress/v1", "seq": step, "step": step,
                    "total_steps": total, "phase": "train",
                    "updated_at": "2030-01-01T00:00:00.000Z", **extra}
        self._post(f"/v1/attempts/{self.attempt_id}/progress",
                   {"lease": self.lease, "snapshot": snapshot})

    def metrics(self, tag: str, values: list[Any], first_step: int = 0) -> None:
        points = [{"step": first_step + i, "tag": tag, "value": v,
                   "at": "2030-01-01T00:00:00.000Z"} for i, v in enumerate(values)]
        body = self._post(f"/v1/runs/{self.run_id}/metrics",
                          {"attempt_id": self.attempt_id, "lease": self.lease,
                           "points": points})
        assert body["written"] == len(points)

    def log(self, data: str, stream: str = "stdout", offset: int = 0) -> None:
        self._post(f"/v1/attempts/{self.attempt_id}/logs", {"lease": self.lease, "chunks": [
            {"stream": stream, "offset": offset, "data": data}]})

    def artifact(self, name: str, data: bytes, kind: str = "file") -> str:
        sha = hashlib.sha256(data).hexdigest()
        r = self.http.put(f"/v1/runs/{self.run_id}/artifacts/{name}",
                          params={"attempt_id": self.attempt_id, "kind": kind}, content=data,
                          headers={"X-Content-SHA256": sha, "X-Runyard-Lease": self.lease})
        assert r.status_code == 201, r.text
        return sha

    def checkpoint(self, step: int, sha256: str | None = None, size: int | None = None,
                   name: str | None = None, **metrics: float) -> None:
        self._post(f"/v1/attempts/{self.attempt_id}/checkpoints", {
            "lease": self.lease, "step": step, "status": "complete" if sha256 else "incomplete",
            "name": name, "sha256": sha256, "size": size, "metrics": metrics}, status=201)

    def complete(self, exit_code: int = 0) -> dict[str, Any]:
        return dict(self._post(f"/v1/attempts/{self.attempt_id}/complete",
                               {"lease": self.lease, "exit_code": exit_code, "details": {}}))

    def fail(self, exit_code: int = 1, reason: str = "user_error") -> dict[str, Any]:
        return dict(self._post(f"/v1/attempts/{self.attempt_id}/fail", {
            "lease": self.lease, "reason": reason, "exit_code": exit_code,
            "stderr_tail": ["Traceback", "ValueError: boom"], "details": {}}))


def submit(server: Any, name: str, **body: Any) -> dict[str, Any]:
    """POST /v1/runs with the admin token (a command run unless told otherwise)."""
    payload = {"name": name, "command": ["python", "train.py"], **body}
    with server.client(headers=server.headers(), timeout=10) as http:
        r = http.post("/v1/runs", json=payload)
    assert r.status_code == 201, r.text
    return dict(r.json())
