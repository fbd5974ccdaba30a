"""HTTP mode: a run started by hand that reports to a Runyard server (``RUNYARD_SERVER``).

The run is created with ``executor: "local"`` (``POST /v1/runs``), which answers with an
attempt and a lease, exactly like a claim; from then on the sink is the worker of its own run:
metric batches, snapshots, checkpoints, heartbeats and the final status all present the lease.

Two threads, neither of them the training loop's: the SDK's drain thread encodes batches and
hands them to a small bounded queue; this sink's sender thread posts them through an
:class:`~runyard.outbox.Outbox`, heartbeats (whose answer carries stop requests) and, while
the server is away, lets the outbox append each request to its spool on disk instead --
memory stays bounded whatever the outage's length. Once the server answers again the spool
is replayed in order, and new requests queue behind it, so the server sees them in the order
the run made them. Every request is idempotent (points are upserts by attempt, tag and
step), so one resent after a crash duplicates nothing. Encoding and sending overlap, which
is what keeps a fast loop's points flowing to the server.

A run started with ``archive=True`` packs its artifact directory at its end and uploads it
with the lease, as an agent does, before its final status (:mod:`.artifact_bundle`); the
server then marks it archived. Like points, that upload still goes once the server ended the
run (through the ended run's import), and a spooled one is sent by ``runyard sync``.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from runyard import defaults, errors, local, nonfinite, timestamps
from runyard.outbox import FixedDelay, Outbox, Spool
from runyard.progress.metrics_stream import MetricPoint
from runyard.sdk import sink as sink_mod
from runyard.sdk.http_api import ServerApi, create_run, encode
from runyard.sdk.notice import Warn, no_warn
from runyard.sdk.settings import SdkSettings

#: Points per request at most (the server accepts up to 100,000).
BATCH_POINTS = 50_000
#: Requests waiting for the sender thread at most; the drain thread waits when it is full.
QUEUE_MAX = 8
#: Seconds ``close()`` keeps trying to reach an absent server before leaving the rest spooled.
CLOSE_WAIT_S = 5.0
#: Lines of a traceback sent as the failure's stderr tail.
TRACEBACK_LINES = defaults.STDERR_TAIL_LINES

#: A request: ``{"path": str, "body": bytes}``, or ``{"checkpoint": {...}}`` (upload first).
Op = dict[str, Any]
_TICK: Op = {}


class HttpSink:
    """A :class:`~runyard.sdk.sink.Sink` that batches to the server and spools when it's away."""

    mode = "http"

    def __init__(self, api: ServerApi, claim: Mapping[str, Any], settings: SdkSettings,
                 local_root: Path, *, warn: Warn = no_warn, archive: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.api = api
        self.settings = settings
        self.run_id = str(claim["run"]["id"])
        self.attempt = int(claim["attempt"]["number"])
        self.attempt_id = str(claim["attempt"]["id"])
        self.lease = str(claim["lease"])
        self.checkpoint_dir: Path | None = local_root / "checkpoints"
        self.artifact_dir: Path | None = local_root / "artifacts"
        #: Whether the artifact directory is uploaded at the end, and whether it was.
        self.archive = archive
        self.archived = False
        self._bundle: Any = None  # packed once, kept while the server is away
        self.spool = run_spool(local_root / "spool")
        self.outbox = Outbox(self.spool, self._send, delays=FixedDelay(settings.retry_interval_s),
                             clock=clock, encode=_encode_op, on_down=self._went_down,
                             on_up=self._came_back)
        self._warn = warn
        self._clock = clock
        self._stop = False
        self._checkpoint: str | None = None  # the pending request's time, from heartbeats
        self._ended = False  # the server ended the attempt (stopped, lost): send nothing more
        self._closing = False
        self._next_beat = clock() + settings.heartbeat_interval_s
        self._queue: queue.Queue[Op | None] = queue.Queue(maxsize=QUEUE_MAX)
        self._thread = threading.Thread(target=self._sender, name="runyard-http", daemon=True)
        self._thread.start()

    @classmethod
    def create(cls, settings: SdkSettings, info: sink_mod.RunInfo, *,
               warn: Warn = no_warn) -> HttpSink:
        """Create the run on the server; raises :class:`errors.RunyardError` if it can't."""
        api = ServerApi(settings)
        try:
            claim = create_run(api, info)
        except BaseException:
            api.close()
            raise
        assert settings.data_dir is not None
        root = local.ensure_data_dir(settings.data_dir) / "local-runs" / str(
            claim["run"]["id"])
        for sub in ("checkpoints", "artifacts"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        try:  # where its artifact files are, until they are archived
            api.post(f"/v1/attempts/{claim['attempt']['id']}/placement",
                     {"lease": claim["lease"], "artifact_store": str(root / "artifacts")})
        except errors.RunyardError as exc:
            warn("http-placement", "runyard: the server did not record where the run's "
                 f"artifacts are ({exc.message})")
        if info.archive:
            from runyard.sdk import artifact_bundle

            if not artifact_bundle.available():  # said now, not after hours of training
                warn("archive", "runyard: this run will not be archived: archiving needs "
                     "zstandard (pip install zstandard, or runyard[server])")
        return cls(api, claim, settings, root, warn=warn, archive=info.archive)

    # ------------------------------------------------------------------ Sink (drain thread)
    def load_config(self) -> dict[str, Any] | None:
        return None  # the server keeps the config given to start_run; nothing overrides it

    def write_rows(self, rows: Sequence[sink_mod.MetricRow]) -> None:
        """Send as compact rows ``[step, at, {tag: value}]``: one per ``log()`` call."""
        out: list[list[Any]] = []
        count = 0
        for step, t, metrics in rows:
            values: Mapping[str, Any] = metrics
            for value in metrics.values():
                if type(value) is float and value - value != 0.0:  # NaN and infinities
                    values = nonfinite.to_wire(metrics)
                    break
            out.append([step, t, values])
            count += len(metrics)
            if count >= BATCH_POINTS:
                self._put_points(out)
                out, count = [], 0
        if out:
            self._put_points(out)

    def write_points(self, points: Sequence[MetricPoint]) -> None:
        at = timestamps.EpochCache()
        rows: list[sink_mod.MetricRow] = []
        for p in points:
            t = at.epoch(p.at)
            rows.append((p.step, time.time() if t is None else t, {p.tag: p.value}))
        self.write_rows(rows)

    def _put_points(self, rows: list[list[Any]]) -> None:
        self._put({"path": f"/v1/runs/{self.run_id}/metrics", "body": encode(
            {"attempt_id": self.attempt_id, "lease": self.lease, "rows": rows})})

    def write_snapshot(self, snapshot: Mapping[str, Any]) -> None:
        self._put({"path": f"/v1/attempts/{self.attempt_id}/progress", "body": encode(
            {"lease": self.lease, "snapshot": nonfinite.to_wire(snapshot)})})

    def write_event(self, kind: str, details: Mapping[str, Any]) -> None:
        # The server records start and status events itself; a warning becomes a run event.
        if kind == "warning":
            text = str(details.get("message") or details)[:2000]
            self._put({"path": f"/v1/attempts/{self.attempt_id}/progress",
                       "body": encode({"lease": self.lease, "warnings": [text]})})

    def register_checkpoint(self, record: sink_mod.CheckpointRecord) -> None:
        self._put({"checkpoint": {"path": record.path, "step": record.step,
                                  "metrics": nonfinite.to_wire(record.metrics),
                                  "status": record.status}})

    def stop_requested(self) -> bool:
        return self._stop  # set by the sender thread from heartbeat answers

    def checkpoint_request(self) -> str | None:
        return None if self._ended else self._checkpoint  # from heartbeat answers too

    def close(self, status: str, details: Mapping[str, Any]) -> None:
        """Send the final status, then wait (bounded) for everything to reach the server."""
        self._closing = True  # no heartbeat may follow the final status
        if self.archive:
            self._put({"archive": {"dir": str(self.artifact_dir)}})
        self._put(self._final_op(status, details))
        self._queue.put(None)
        self._thread.join(CLOSE_WAIT_S + self.settings.request_timeout_s)

    def _put(self, op: Op) -> None:
        if not self._ended or _after_end(op):
            self._queue.put(op)

    # ------------------------------------------------------------------ sender thread
    def _sender(self) -> None:
        while True:
            try:
                op = self._queue.get(timeout=self._wait_s())
            except queue.Empty:
                op = _TICK
            if op is None:
                break
            try:
                if op is not _TICK:
                    self._submit(op)
                self._periodic()
            except Exception as exc:  # the sender must never die silently
                self._warn("http-sender", f"runyard: HTTP tracking error: {exc!r}")
        try:
            self._finish()
        except Exception as exc:
            self._warn("http-sender", f"runyard: HTTP tracking error: {exc!r}")

    def _wait_s(self) -> float:
        waiting = self.outbox.down or self.outbox.backlog
        due = self.outbox.retry_at if waiting else self._next_beat
        return min(1.0, max(0.01, due - self._clock()))

    def _periodic(self) -> None:
        now = self._clock()
        if self.outbox.down or self.outbox.backlog:
            self.outbox.flush()
        elif now >= self._next_beat and not self._closing and not self._ended:
            self._heartbeat(now)

    def _finish(self) -> None:
        self._closing = True  # the final status is queued: no heartbeat may follow it
        deadline = self._clock() + CLOSE_WAIT_S
        while self.spool.pending and self._clock() < deadline:
            if not self.outbox.flush(force=True):
                time.sleep(min(0.25, self.settings.retry_interval_s))
        if self.spool.pending:
            self._warn("http-left", f"runyard: the server at {self.api.server} is unreachable; "
                       f"the rest of run {self.run_id} is kept in {self.spool.directory} "
                       "and `runyard sync` sends it")
            if self.archive and not self.archived:
                self._warn("archive-left", f"runyard: run {self.run_id} is not archived yet: "
                           f"its artifacts stay in {self.artifact_dir} and `runyard sync` "
                           "archives them")
        else:
            self.spool.remove()
        if self._bundle is not None:
            self._bundle.cleanup()
        self.api.close()

    def _final_op(self, status: str, details: Mapping[str, Any]) -> Op:
        base = f"/v1/attempts/{self.attempt_id}"
        clean = nonfinite.to_wire(dict(details))
        if status == "completed":
            return {"path": f"{base}/complete", "body": encode(
                {"lease": self.lease, "exit_code": 0, "details": clean})}
        tail = str(details.get("traceback") or "").splitlines()[-TRACEBACK_LINES:]
        stopped = status == "stopped"
        return {"path": f"{base}/fail", "body": encode({
            "lease": self.lease, "reason": "stopped" if stopped else "user_error",
            "exit_code": None if stopped else 1, "stderr_tail": tail, "details": clean})}

    def _submit(self, op: Op) -> None:
        if self._ended and not _after_end(op):
            return  # the run ended on the server: only its points and archive still go
        self.outbox.post(op)

    def _went_down(self, outbox: Outbox, why: str) -> None:
        # Before the first request is spooled: what `runyard sync` needs to send the rest.
        self.spool.write_meta({"server": self.api.server, "run_id": self.run_id,
                               "attempt_id": self.attempt_id, "attempt": self.attempt,
                               "lease": self.lease})
        self._warn("http-offline", f"runyard: {why}; spooling to {self.spool.directory} "
                   "until it is back")

    def _came_back(self, outbox: Outbox, outage_s: float) -> None:
        self._warn("http-back", f"runyard: the server at {self.api.server} is back; "
                   "the spooled data was sent")
        if not self._closing and not self._ended:
            self._heartbeat(self._clock())

    def _send(self, op: Mapping[str, Any]) -> None:
        """One request; :class:`errors.TransportError` propagates, the rest is settled here."""
        try:
            if "archive" in op:
                self._send_archive(op["archive"])
            elif self._ended:
                if _is_metrics(op):
                    self.api.post(f"/v1/runs/{self.run_id}/import/metrics", self._imported(op))
            elif "checkpoint" in op:
                self._send_checkpoint(op["checkpoint"])
            else:
                body = op["body"]
                self.api.post(op["path"], body if isinstance(body, bytes) else encode(body))
        except errors.TransportError:
            raise
        except errors.Conflict as exc:
            if self._ended:
                self._warn("refused:import", "runyard: the server refused points of the "
                           f"ended run, which are dropped: {exc.message}")
                return
            self._lease_lost(exc)
            if _after_end(op):
                self._send(op)  # the points still go, through the ended run's import
        except errors.RunyardError as exc:
            self._warn(f"refused:{op.get('path') or next(iter(op))}", "runyard: the server "
                       f"refused a request, which is dropped: {exc.message}")

    def _send_checkpoint(self, ck: Mapping[str, Any]) -> None:
        from runyard.sdk import checkpoint_files

        body: dict[str, Any] = {"lease": self.lease, "step": ck.get("step") or 0,
                                "status": "incomplete", "metrics": ck.get("metrics") or {}}
        packed = checkpoint_files.pack(Path(ck["path"])) if ck.get("status") == "complete" \
            else None
        if packed is not None:
            name = f"checkpoints/{packed.name}"
            try:
                self.api.put_file(
                    f"/v1/runs/{self.run_id}/artifacts/{name}?attempt_id={self.attempt_id}"
                    "&kind=checkpoint", packed.file, packed.sha256, self.lease)
            finally:
                packed.cleanup()
            body.update(status="complete", name=name, sha256=packed.sha256, size=packed.size)
        self.api.post(f"/v1/attempts/{self.attempt_id}/checkpoints", body)

    def _send_archive(self, spec: Mapping[str, Any]) -> None:
        """Pack the artifact directory once and upload it: with the lease while the run is
        running here, through the ended run's import otherwise."""
        from runyard.sdk import artifact_bundle

        directory = Path(str(spec.get("dir")))
        if self._bundle is None or not self._bundle.file.exists():
            try:
                self._bundle = artifact_bundle.pack(directory)
            except (errors.NotFound, errors.ConfigError, OSError) as exc:
                why = exc.message if isinstance(exc, errors.RunyardError) else repr(exc)
                self._warn("archive", f"runyard: run {self.run_id} is not archived: {why}")
                return
            if self._bundle is None:
                self._warn("archive", f"runyard: run {self.run_id} is not archived: its "
                           f"artifact directory {directory} is empty")
                return
        bundle = self._bundle
        if self._ended:
            self.api.put_file(artifact_bundle.url(artifact_bundle.import_upload(
                self.run_id, self.attempt)), bundle.file, bundle.sha256, None)
        else:
            self.api.put_file(artifact_bundle.url(artifact_bundle.leased_upload(
                self.run_id, self.attempt_id)), bundle.file, bundle.sha256, self.lease)
        bundle.cleanup()
        self._bundle = None
        self.archived = True

    def _lease_lost(self, exc: errors.RunyardError) -> None:
        self._ended = self._stop = True
        self._warn("lease", f"runyard: run {self.run_id} was ended on the server "
                   f"({exc.message}); only its metric points are still sent")

    def _imported(self, op: Mapping[str, Any]) -> bytes:
        """A metrics request of the ended run, for ``POST /v1/runs/{id}/import/metrics``."""
        body = op["body"]
        data = json.loads(body) if isinstance(body, bytes) else dict(body)
        return encode({"attempt": self.attempt, "rows": data.get("rows", []),
                       "points": data.get("points", [])})

    def _heartbeat(self, now: float) -> None:
        self._next_beat = now + self.settings.heartbeat_interval_s
        try:
            answer = self.api.post(f"/v1/attempts/{self.attempt_id}/heartbeat",
                                   {"lease": self.lease, "running": True})
        except errors.TransportError as exc:
            self.outbox.mark_down(exc.message)
            return
        except errors.Conflict as exc:
            self._lease_lost(exc)
            return
        except errors.RunyardError:
            return
        if isinstance(answer, dict):
            if answer.get("stop"):
                self._stop = True
            asked = answer.get("checkpoint_requested_at")
            self._checkpoint = str(asked) if answer.get("checkpoint") and asked else None


def _is_metrics(op: Mapping[str, Any]) -> bool:
    return str(op.get("path", "")).endswith("/metrics")


def _after_end(op: Mapping[str, Any]) -> bool:
    """What still goes once the server ended the run: its points and its archive."""
    return _is_metrics(op) or "archive" in op


def run_spool(directory: Path) -> Spool:
    """The spool of one HTTP-mode run: what ``runyard sync`` finds under
    ``<data dir>/local-runs/<run_id>/spool`` (``ops.jsonl``, ``cursor``, ``run.json``)."""
    return Spool(directory, entries_file="ops.jsonl", cursor_file="cursor")


def _encode_op(op: Mapping[str, Any]) -> bytes:
    """A request as one spool line; a body that is JSON already is embedded as it is."""
    body = op.get("body")
    if isinstance(body, bytes):
        return b'{"path":' + json.dumps(op["path"]).encode() + b',"body":' + body + b"}"
    return json.dumps(op, separators=(",", ":"), allow_nan=False, default=str).encode()
