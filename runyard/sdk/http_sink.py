"""HTTP mode: a run started by hand that reports to a Runyard server (``RUNYARD_SERVER``).

The run is created with ``executor: "local"`` (``POST /v1/runs``), which answers with an
attempt and a lease, exactly like a claim; from then on the sink is a worker of its own run:
metric batches, snapshots, checkpoints, heartbeats and the final status all present the lease.

The SDK's background thread is the only caller, so a slow server never blocks training.
When the server is away, each request is appended to a :class:`~runyard.sdk.spool.Spool` on
disk instead (memory stays bounded whatever the outage's length) and replayed in order once
the server answers again; while anything is spooled, new requests queue behind it, so the
server always sees them in the order the run made them. Every request is idempotent (points
are upserts by attempt, tag and step), so a request resent after a crash duplicates nothing.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from runyard import __version__, defaults, errors
from runyard.progress import snapshot as snapshot_mod
from runyard.progress.metrics_stream import MetricPoint
from runyard.sdk import sink as sink_mod
from runyard.sdk.settings import SdkSettings
from runyard.sdk.spool import Spool

#: Points per request at most (the server accepts up to 100,000).
BATCH_POINTS = 50_000
#: Seconds ``close()`` keeps trying to reach an absent server before leaving the rest spooled.
CLOSE_WAIT_S = 5.0
#: Lines of a traceback sent as the failure's stderr tail.
TRACEBACK_LINES = defaults.STDERR_TAIL_LINES

Warn = sink_mod.Warn
_no_warn = sink_mod._no_warn


class _Offline(Exception):
    """The server could not be reached or failed (5xx): spool and retry later."""


class _Refused(Exception):
    """The server refused the request for good (4xx other than a lapse): drop it."""


class ServerApi:
    """The few endpoints a local run needs, with errors mapped at this edge."""

    def __init__(self, settings: SdkSettings) -> None:
        assert settings.server
        self.server = settings.server
        headers = {"User-Agent": f"runyard-sdk/{__version__}",
                   "Content-Type": "application/json"}
        if settings.token:
            headers["Authorization"] = f"Bearer {settings.token}"
        self.http = httpx.Client(
            base_url=settings.server, headers=headers, transport=settings.transport,
            timeout=httpx.Timeout(settings.request_timeout_s, connect=settings.connect_timeout_s))

    def post(self, path: str, body: Mapping[str, Any]) -> Any:
        """POST ``body`` as JSON; raises :class:`_Offline`, :class:`_Refused` or a
        :class:`errors.LeaseConflict` (the run ended on the server)."""
        content = json.dumps(body, separators=(",", ":"), allow_nan=False, default=str)
        try:
            resp = self.http.post(path, content=content.encode())
        except httpx.HTTPError as exc:  # connection refused, timeout, reset...
            raise _Offline(f"cannot reach {self.server}: {exc!r}") from exc
        if resp.status_code >= 500 or resp.status_code in (408, 429):
            raise _Offline(f"{self.server} answered {resp.status_code}")
        if resp.status_code >= 400:
            from runyard.client.http import error_from_response

            err = error_from_response(resp)
            if resp.status_code == 409 and isinstance(err, errors.Conflict):
                raise errors.LeaseConflict(err.message) from err
            raise _Refused(f"{path}: {err.message}") from err
        return resp.json() if resp.content else None

    def put_file(self, path: str, file: Path, sha256: str, lease: str) -> Any:
        with open(file, "rb") as fh:
            try:
                resp = self.http.put(path, content=fh, headers={
                    "X-Content-SHA256": sha256, "X-Runyard-Lease": lease,
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(file.stat().st_size)})
            except httpx.HTTPError as exc:
                raise _Offline(f"cannot reach {self.server}: {exc!r}") from exc
        if resp.status_code >= 500:
            raise _Offline(f"{self.server} answered {resp.status_code}")
        if resp.status_code >= 400:
            from runyard.client.http import error_from_response

            raise _Refused(f"upload {file}: {error_from_response(resp).message}")
        return resp.json()

    def close(self) -> None:
        self.http.close()


def create_run(api: ServerApi, info: sink_mod.RunInfo) -> dict[str, Any]:
    """``POST /v1/runs`` for a local run; the answer carries run, attempt and lease."""
    body = {"name": info.name or sink_mod.default_name(), "project": info.project,
            "config": snapshot_mod.to_wire(info.config), "executor": "local",
            "workdir": os.getcwd(), "host_id": socket.gethostname() or "local"}
    if info.project is None:
        del body["project"]
    answer = api.post("/v1/runs", body)
    if not isinstance(answer, dict) or "lease" not in answer:
        raise _Refused("the server did not start a local run (is it a Runyard server?)")
    return answer


class HttpSink:
    """A :class:`~runyard.sdk.sink.Sink` that batches to the server and spools when it's away."""

    mode = "http"

    def __init__(self, api: ServerApi, claim: Mapping[str, Any], settings: SdkSettings,
                 local_root: Path, *, warn: Warn = _no_warn,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.api = api
        self.settings = settings
        self.run_id = str(claim["run"]["id"])
        self.attempt = int(claim["attempt"]["number"])
        self.attempt_id = str(claim["attempt"]["id"])
        self.lease = str(claim["lease"])
        self.config: dict[str, Any] = dict(claim["run"].get("config") or {})
        self.local_root = local_root
        self.checkpoint_dir: Path | None = local_root / "checkpoints"
        self.artifact_dir: Path | None = local_root / "artifacts"
        self.spool = Spool(local_root / "spool")
        self._warn = warn
        self._clock = clock
        self._stop = False
        self._ended = False  # the server ended the attempt (stopped, lost): stop sending
        self._online = True
        self._next_retry = 0.0
        self._next_beat = clock() + settings.heartbeat_interval_s
        self._at = sink_mod.EpochCache()
        self.sent_requests = 0

    @classmethod
    def create(cls, settings: SdkSettings, info: sink_mod.RunInfo, *,
               warn: Warn = _no_warn) -> HttpSink:
        """Create the run on the server; raises :class:`errors.RunyardError` if it can't."""
        api = ServerApi(settings)
        try:
            claim = create_run(api, info)
        except (_Offline, _Refused) as exc:
            api.close()
            raise errors.TransportError(str(exc)) from exc
        except errors.RunyardError:
            api.close()
            raise
        assert settings.data_dir is not None
        root = settings.data_dir / "local-runs" / str(claim["run"]["id"])
        for sub in ("checkpoints", "artifacts"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        return cls(api, claim, settings, root, warn=warn)

    # ------------------------------------------------------------------ Sink
    def load_config(self) -> dict[str, Any] | None:
        return None  # the server stores the config given to start_run; nothing overrides it

    def write_points(self, points: Sequence[MetricPoint]) -> None:
        path = f"/v1/runs/{self.run_id}/metrics"
        for start in range(0, len(points), BATCH_POINTS):
            chunk = points[start:start + BATCH_POINTS]
            self._submit({"path": path, "body": {
                "attempt_id": self.attempt_id, "lease": self.lease,
                "points": [self._point(p) for p in chunk]}})

    def _point(self, p: MetricPoint) -> dict[str, Any]:
        value = p.value
        if value != value or value in (float("inf"), float("-inf")):
            value = snapshot_mod.encode_number(value)  # type: ignore[assignment]
        return {"step": p.step, "tag": p.tag, "value": value, "at": self._at.epoch(p.at)}

    def write_snapshot(self, snapshot: Mapping[str, Any]) -> None:
        self._submit({"path": f"/v1/attempts/{self.attempt_id}/progress",
                      "body": {"lease": self.lease, "snapshot": snapshot_mod.to_wire(snapshot)}})

    def write_event(self, kind: str, details: Mapping[str, Any]) -> None:
        # The server records start and status events itself; a warning becomes a run event.
        if kind == "warning":
            text = str(details.get("message") or details)[:2000]
            self._submit({"path": f"/v1/attempts/{self.attempt_id}/progress",
                          "body": {"lease": self.lease, "warnings": [text]}})

    def register_checkpoint(self, record: sink_mod.CheckpointRecord) -> None:
        self._submit({"checkpoint": {"path": record.path, "step": record.step,
                                     "metrics": snapshot_mod.to_wire(record.metrics),
                                     "status": record.status}})

    def stop_requested(self) -> bool:
        now = self._clock()
        if not self._ended:
            if self._online and not self.spool.pending and now >= self._next_beat:
                self._heartbeat(now)
            elif (not self._online or self.spool.pending) and now >= self._next_retry:
                self._replay(now)
        return self._stop

    def close(self, status: str, details: Mapping[str, Any]) -> None:
        self._submit(self._final_op(status, details))
        deadline = self._clock() + CLOSE_WAIT_S
        while self.spool.pending and not self._ended and self._clock() < deadline:
            self._replay(self._clock())
            if self.spool.pending:
                time.sleep(min(0.25, self.settings.retry_interval_s))
        if self.spool.pending and not self._ended:
            self._warn("http-left", f"runyard: the server at {self.api.server} is unreachable; "
                       f"the rest of run {self.run_id} is kept in {self.spool.directory} and "
                       "`runyard sync` sends it")
        elif not self.spool.pending:
            self.spool.remove()
        self.api.close()

    # ------------------------------------------------------------------ internals
    def _final_op(self, status: str, details: Mapping[str, Any]) -> dict[str, Any]:
        base = f"/v1/attempts/{self.attempt_id}"
        clean = snapshot_mod.to_wire(dict(details))
        if status == "completed":
            return {"path": f"{base}/complete",
                    "body": {"lease": self.lease, "exit_code": 0, "details": clean}}
        tail = str(details.get("traceback") or "").splitlines()[-TRACEBACK_LINES:]
        reason = "stopped" if status == "stopped" else "user_error"
        return {"path": f"{base}/fail", "body": {
            "lease": self.lease, "reason": reason, "exit_code": None if reason == "stopped"
            else 1, "stderr_tail": tail, "details": clean}}

    def _submit(self, op: dict[str, Any]) -> None:
        if self._ended:
            return
        if not self._online or self.spool.pending:
            self._spool(op)
            return
        try:
            self._send(op)
        except _Offline as exc:
            self._go_offline(str(exc))
            self._spool(op)

    def _spool(self, op: dict[str, Any]) -> None:
        if not self.spool.pending:
            self.spool.write_meta({"server": self.api.server, "run_id": self.run_id,
                                   "attempt_id": self.attempt_id, "lease": self.lease})
        self.spool.append(op)

    def _go_offline(self, why: str) -> None:
        if self._online:
            self._warn("http-offline", f"runyard: {why}; spooling to {self.spool.directory} "
                       "until it is back")
        self._online = False
        self._next_retry = self._clock() + self.settings.retry_interval_s

    def _send(self, op: Mapping[str, Any]) -> None:
        """One request; :class:`_Offline` propagates, everything else is settled here."""
        try:
            if "checkpoint" in op:
                self._send_checkpoint(op["checkpoint"])
            else:
                self.api.post(op["path"], op["body"])
            self.sent_requests += 1
        except _Refused as exc:
            self._warn(f"refused:{op.get('path', 'checkpoint')}",
                       f"runyard: the server refused a request and it is dropped: {exc}")
        except errors.LeaseConflict as exc:
            self._ended = True
            self._stop = True
            self._warn("lease", f"runyard: run {self.run_id} was ended on the server ({exc}); "
                       "nothing more is sent")

    def _send_checkpoint(self, ck: Mapping[str, Any]) -> None:
        from runyard.sdk import checkpoint_files

        body: dict[str, Any] = {"lease": self.lease, "step": ck.get("step") or 0,
                                "status": "incomplete", "metrics": ck.get("metrics") or {}}
        packed = checkpoint_files.pack(Path(ck["path"])) if ck.get("status") == "complete" \
            else None
        if packed is not None:
            name = f"checkpoints/{packed.name}"
            self.api.put_file(
                f"/v1/runs/{self.run_id}/artifacts/{name}?attempt_id={self.attempt_id}"
                "&kind=checkpoint", packed.file, packed.sha256, self.lease)
            body.update(status="complete", name=name, sha256=packed.sha256, size=packed.size)
            packed.cleanup()
        self.api.post(f"/v1/attempts/{self.attempt_id}/checkpoints", body)

    def _heartbeat(self, now: float) -> None:
        self._next_beat = now + self.settings.heartbeat_interval_s
        try:
            answer = self.api.post(f"/v1/attempts/{self.attempt_id}/heartbeat",
                                   {"lease": self.lease, "running": True})
        except _Offline as exc:
            self._go_offline(str(exc))
            return
        except _Refused:
            return
        except errors.LeaseConflict as exc:
            self._ended = self._stop = True
            self._warn("lease", f"runyard: run {self.run_id} was ended on the server ({exc}); "
                       "nothing more is sent")
            return
        if isinstance(answer, dict) and answer.get("stop"):
            self._stop = True

    def _replay(self, now: float) -> None:
        """Send spooled requests in order; stop at the first that cannot get through."""
        try:
            for op, end in self.spool.pending_ops():
                self._send(op)
                self.spool.ack(end)
                if self._ended:
                    return
        except _Offline as exc:
            self._online = False
            self._next_retry = now + self.settings.retry_interval_s
            del exc
            return
        self.spool.finish_replay()
        if not self._online:
            self._online = True
            self._warn("http-back", f"runyard: the server at {self.api.server} is back; "
                       "spooled data sent")
            self._heartbeat(self._clock())
