"""The worker side of the HTTP API (``/v1/workers/claim``, ``/v1/attempts/...``), over httpx.

Every call maps failures onto :mod:`runyard.errors` at this boundary, keeping ``__cause__``,
as a lease holder reads them (:mod:`runyard.http_errors`): no answer or one worth retrying
is :class:`errors.TransportError` (retry later), 409 is :class:`errors.LeaseConflict` (the
lease is gone: stop, never retry), other 4xx are the error class the server named.
:meth:`WorkerAPI.call` retries transport errors with exponential backoff and full jitter;
the claim loop and the spool do their own pacing.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from runyard import errors, http_errors

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds one HTTP request may take (connect, read, write) before it counts as a failure.
REQUEST_TIMEOUT_S = 10.0
#: Seconds an artifact upload may take.
UPLOAD_TIMEOUT_S = 600.0


class LeaseLost(Exception):
    """The server answered 409 to an attempt's call: another worker owns the run now. Raised
    by a runner's delivery to unwind to its abandon path."""


@dataclass
class Backoff:
    """Exponential backoff with full jitter: ``uniform(0, min(cap, base * 2**n))``.

    Full jitter keeps a fleet of agents that lost the server at the same moment from coming
    back in lockstep. ``minimum`` puts a floor under each delay so an idle loop never spins.
    """

    base: float = 0.5
    cap: float = 30.0
    minimum: float = 0.0
    failures: int = 0
    rng: random.Random | None = None

    def next_delay(self) -> float:
        """The delay before the next try; each call counts one more failure."""
        ceiling = min(self.cap, self.base * (2 ** min(self.failures, 30)))
        self.failures += 1
        rand = (self.rng or random).uniform(0.0, ceiling)
        return max(self.minimum, rand)

    def reset(self) -> None:
        self.failures = 0


def is_retryable(exc: BaseException) -> bool:
    """Transport failures and 5xx: the server may answer later."""
    return isinstance(exc, errors.TransportError)


class WorkerAPI:
    """The calls an agent makes, with one worker token.

    ``transport`` is injectable (``httpx.MockTransport`` in unit tests of callers).
    """

    def __init__(self, server: str, token: str | None, *,
                 timeout: float = REQUEST_TIMEOUT_S,
                 transport: httpx.BaseTransport | None = None) -> None:
        if not server.startswith(("http://", "https://")):
            raise errors.ConfigError(f"server: expected an http:// or https:// URL, got "
                                     f"{server!r}", field="server")
        headers = {"User-Agent": "runyard-agent"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.server = server.rstrip("/")
        self._options: dict[str, Any] = {"base_url": self.server, "headers": headers,
                                         "timeout": timeout, "transport": transport}
        self._http: httpx.Client | None = None
        self._lock = threading.Lock()

    @property
    def _client(self) -> httpx.Client:
        """The HTTP client, built (and httpx imported) by the first request: a supervisor
        starts its training command before it talks to the server (runyard.agent.supervise)."""
        if self._http is None:
            with self._lock:
                if self._http is None:
                    import httpx

                    self._http = httpx.Client(**self._options)
        return self._http

    def close(self) -> None:
        with self._lock:
            if self._http is not None:
                self._http.close()

    # --- plumbing ---------------------------------------------------------------------------

    def request(self, method: str, path: str, *, json: Any = None,
                params: Mapping[str, Any] | None = None, content: bytes | Any = None,
                headers: Mapping[str, str] | None = None,
                timeout: float | None = None) -> httpx.Response:
        """One request; a non-2xx answer or no answer raises a :mod:`runyard.errors` class."""
        import httpx

        what = f"{method} {path}"
        try:
            resp = self._client.request(
                method, path, json=json, params=params, content=content, headers=headers,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT)
        except httpx.HTTPError as exc:
            raise errors.TransportError(f"{what}: {type(exc).__name__}: {exc}") from exc
        if resp.status_code >= 300:
            raise http_errors.error_from_response(resp, context=what, lease_holder=True)
        return resp

    def call(self, fn: Callable[[], T], *, attempts: int = 5,
             backoff: Backoff | None = None,
             should_stop: Callable[[], bool] | None = None) -> T:
        """Run ``fn`` retrying transport errors up to ``attempts`` times, with backoff."""
        backoff = backoff or Backoff(base=0.25, cap=5.0)
        for i in range(attempts):
            try:
                return fn()
            except errors.TransportError as exc:
                if i == attempts - 1 or (should_stop is not None and should_stop()):
                    raise
                delay = backoff.next_delay()
                log.info("%s; retrying in %.2f s", exc.message, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _json(resp: httpx.Response) -> dict[str, Any]:
        if resp.status_code == 204 or not resp.content:
            return {}
        data = resp.json()
        return data if isinstance(data, dict) else {"value": data}

    # --- the worker endpoints ---------------------------------------------------------------

    def claim(self, host_id: str, capabilities: Mapping[str, Any],
              free_slots: int) -> dict[str, Any] | None:
        """A claimed run (the claim answer) or None when nothing is eligible (204)."""
        resp = self.request("POST", "/v1/workers/claim", json={
            "host_id": host_id, "capabilities": dict(capabilities), "free_slots": free_slots})
        return None if resp.status_code == 204 else self._json(resp)

    def heartbeat(self, attempt_id: str, lease: str, running: bool = True) -> dict[str, Any]:
        return self._json(self.request("POST", f"/v1/attempts/{attempt_id}/heartbeat",
                                       json={"lease": lease, "running": running}))

    def progress(self, attempt_id: str, lease: str, snapshot: Mapping[str, Any] | None,
                 warnings: Sequence[str] = ()) -> dict[str, Any]:
        return self._json(self.request("POST", f"/v1/attempts/{attempt_id}/progress", json={
            "lease": lease, "snapshot": dict(snapshot) if snapshot is not None else None,
            "warnings": list(warnings)}))

    def metrics(self, run_id: str, attempt_id: str, lease: str, *,
                points: Sequence[Mapping[str, Any]] = (),
                rows: Sequence[Sequence[Any]] = ()) -> dict[str, Any]:
        """Send points, as ``{step, tag, value, at}`` objects or compact ``[step, at,
        {tag: value}]`` rows (what the probe sends, see :class:`runyard.agent.wire.WireRows`)."""
        body: dict[str, Any] = {"attempt_id": attempt_id, "lease": lease,
                                "points": list(points), "rows": list(rows)}
        # Points come JSON-safe (non-finite values spelled as strings), so orjson may encode
        # them: encoding large batches is a visible share of the agent's CPU with json.
        return self._json(self.request("POST", f"/v1/runs/{run_id}/metrics",
                                       content=orjson.dumps(body),
                                       headers={"Content-Type": "application/json"}))

    def logs(self, attempt_id: str, lease: str,
             chunks: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        return self._json(self.request("POST", f"/v1/attempts/{attempt_id}/logs",
                                       json={"lease": lease, "chunks": list(chunks)}))

    def put_artifact(self, run_id: str, attempt_id: str, lease: str, name: str, kind: str,
                     data: bytes | Any, sha256: str) -> dict[str, Any]:
        """Upload a blob; ``data`` is bytes or a binary file object (streamed)."""
        return self._json(self.request(
            "PUT", f"/v1/runs/{run_id}/artifacts/{name}",
            params={"attempt_id": attempt_id, "kind": kind}, content=data,
            headers={"X-Content-SHA256": sha256, "X-Runyard-Lease": lease,
                     "Content-Type": "application/octet-stream"},
            timeout=UPLOAD_TIMEOUT_S))

    def checkpoint(self, attempt_id: str, lease: str, *, step: int, status: str,
                   name: str, sha256: str | None, size: int | None,
                   metrics: Mapping[str, Any]) -> dict[str, Any]:
        return self._json(self.request("POST", f"/v1/attempts/{attempt_id}/checkpoints", json={
            "lease": lease, "step": step, "status": status, "name": name, "sha256": sha256,
            "size": size, "metrics": dict(metrics)}))

    def download_resume(self, attempt_id: str, lease: str, dest: Any
                        ) -> dict[str, str] | None:
        """Write the checkpoint this attempt resumes from to the binary file ``dest``;
        its ``X-Runyard-Checkpoint-*`` and ``X-Content-SHA256`` headers, or None (204)."""
        import httpx

        what = f"GET /v1/attempts/{attempt_id}/resume"
        try:
            with self._client.stream("GET", f"/v1/attempts/{attempt_id}/resume",
                                     headers={"X-Runyard-Lease": lease},
                                     timeout=UPLOAD_TIMEOUT_S) as resp:
                if resp.status_code >= 300:
                    resp.read()
                    raise http_errors.error_from_response(resp, context=what,
                                                          lease_holder=True)
                if resp.status_code == 204:
                    return None
                for chunk in resp.iter_bytes(1024 * 1024):
                    dest.write(chunk)
                return {k.lower(): v for k, v in resp.headers.items()
                        if k.lower().startswith(("x-runyard-checkpoint-", "x-content-sha256"))}
        except httpx.HTTPError as exc:
            raise errors.TransportError(f"{what}: {type(exc).__name__}: {exc}") from exc
    def placement(self, attempt_id: str, lease: str, *, external_id: str | None = None,
                  nodes: Sequence[str] | None = None,
                  workdir: str | None = None) -> dict[str, Any]:
        """Record where the executor placed the attempt (a Slurm job id, its nodes) and the
        directory its process runs in."""
        body: dict[str, Any] = {"lease": lease, "external_id": external_id,
                                "nodes": None if nodes is None else list(nodes)}
        if workdir is not None:
            body["workdir"] = workdir
        return self._json(self.request("POST", f"/v1/attempts/{attempt_id}/placement",
                                       json=body))

    def complete(self, attempt_id: str, lease: str, exit_code: int = 0,
                 details: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return self._json(self.request("POST", f"/v1/attempts/{attempt_id}/complete", json={
            "lease": lease, "exit_code": exit_code, "details": dict(details or {})}))

    def fail(self, attempt_id: str, lease: str, reason: str, *, exit_code: int | None = None,
             stderr_tail: Sequence[str] = (),
             details: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return self._json(self.request("POST", f"/v1/attempts/{attempt_id}/fail", json={
            "lease": lease, "reason": reason, "exit_code": exit_code,
            "stderr_tail": list(stderr_tail), "details": dict(details or {})}))
