"""The few server endpoints a local run needs, with errors mapped at this edge.

Every failure becomes a :mod:`runyard.errors` exception: :class:`errors.TransportError` when
the server cannot be reached or fails (5xx, 408, 429: worth retrying later),
:class:`errors.Conflict` when the run was ended on the server (the lease is fenced), and the
mapped 4xx error otherwise (the request is refused for good).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from runyard import __version__, errors, http_errors, nonfinite
from runyard.sdk import names
from runyard.sdk import sink as sink_mod
from runyard.sdk.settings import SdkSettings


def encode(body: Mapping[str, Any]) -> bytes:
    """A request body as compact JSON (non-finite numbers must be spelled out already)."""
    return json.dumps(body, separators=(",", ":"), allow_nan=False, default=str).encode()


class ServerApi:
    """An ``httpx.Client`` on the configured server (its transport injectable for tests)."""

    def __init__(self, settings: SdkSettings) -> None:
        if not settings.server:
            raise errors.ConfigError("server: not configured")
        self.server = settings.server
        headers = {"User-Agent": f"runyard-sdk/{__version__}",
                   "Content-Type": "application/json"}
        if settings.token:
            headers["Authorization"] = f"Bearer {settings.token}"
        self.http = httpx.Client(
            base_url=settings.server, headers=headers, transport=settings.transport,
            timeout=httpx.Timeout(settings.request_timeout_s, connect=settings.connect_timeout_s))

    def post(self, path: str, body: bytes | Mapping[str, Any]) -> Any:
        """POST ``body`` (JSON bytes, or a mapping to encode); the decoded answer."""
        content = body if isinstance(body, bytes) else encode(body)
        try:
            resp = self.http.post(path, content=content)
        except httpx.HTTPError as exc:  # refused, timed out, reset...
            raise errors.TransportError(f"cannot reach {self.server}: {exc!r}") from exc
        return self._answer(resp)

    def put_file(self, path: str, file: Path, sha256: str, lease: str | None) -> Any:
        """Stream ``file`` as the body of a PUT (artifact upload; ``lease`` None for an
        ended run's import)."""
        headers = {"X-Content-SHA256": sha256, "Content-Type": "application/octet-stream",
                   "Content-Length": str(file.stat().st_size)}
        if lease is not None:
            headers["X-Runyard-Lease"] = lease
        with open(file, "rb") as fh:
            try:
                resp = self.http.put(path, content=fh, headers=headers)
            except httpx.HTTPError as exc:
                raise errors.TransportError(f"cannot reach {self.server}: {exc!r}") from exc
        return self._answer(resp)

    def _answer(self, resp: httpx.Response) -> Any:
        if resp.status_code >= 400:
            raise http_errors.error_from_response(resp, lease_holder=True)
        return resp.json() if resp.content else None

    def close(self) -> None:
        self.http.close()


def create_run(api: ServerApi, info: sink_mod.RunInfo) -> dict[str, Any]:
    """``POST /v1/runs`` for a local run; the answer carries run, attempt and lease."""
    body: dict[str, Any] = {
        "name": info.name or names.default_name(), "config": nonfinite.to_wire(info.config),
        "executor": "local", "workdir": os.getcwd(), "host_id": socket.gethostname() or "local"}
    if info.project:
        body["project"] = info.project
    answer = api.post("/v1/runs", body)
    if not isinstance(answer, dict) or "lease" not in answer:
        raise errors.ServerError(f"{api.server} did not start a local run "
                                 "(is it a Runyard server?)")
    return answer
