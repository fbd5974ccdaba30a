"""Embedded mode: no server, no agent -- the run goes straight into the embedded SQLite store.

The database is the one ``runyard up`` / ``runyard server`` use for the same data directory
(``<data dir>/runyard.db``), so a server started there later (or running already: SQLite in
WAL mode takes both) shows the run with the same lifecycle as a scheduled one. The run is
created by :meth:`Queue.start_local` -- running, with an attempt and a lease held by this
process -- and this sink heartbeats that lease, so a process killed outright ends up ``lost``
instead of a zombie ``running``, and a stop requested from the CLI/UI reaches it.

Needs SQLAlchemy (the ``server`` extra). :func:`runyard.sdk.choose.select_sink` falls back to
the local-directory files when it is not installed; ``runyard sync`` uploads both.
"""

from __future__ import annotations

import getpass
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from runyard import errors, nonfinite, timestamps
from runyard.progress.metrics_stream import MetricPoint
from runyard.sdk import names
from runyard.sdk import sink as sink_mod
from runyard.sdk.settings import HEARTBEAT_INTERVAL_S

Warn = Callable[[str, str], object]

#: The event of a run that asked to be archived; ``runyard sync`` archives such runs.
ARCHIVE_REQUESTED = "archive_requested"


def local_actor() -> str:
    """Who started a local run, as events and the owner column show it."""
    try:
        user = getpass.getuser()
    except Exception:  # no user database entry (containers)
        user = ""
    return f"local:{user}" if user else "local"


class StoreSink:
    """A :class:`~runyard.sdk.sink.Sink` writing through the queue into the embedded store."""

    mode = "embedded"

    def __init__(self, data_dir: Path, info: sink_mod.RunInfo, *,
                 heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        from runyard.queue import Queue
        from runyard.store import default_url, open_store

        self.data_dir = data_dir
        self.store = open_store(default_url(data_dir))
        self.queue = Queue(self.store)
        actor = local_actor()
        request: dict[str, Any] = {"name": info.name or names.default_name(),
                                   "config": nonfinite.to_wire(info.config)}
        if info.project:
            request["project"] = info.project
        try:
            claim = self.queue.start_local(request, host_id=socket.gethostname() or "local",
                                           actor=actor, owner=actor, workdir=os.getcwd())
        except BaseException:
            self.store.close()
            raise
        self.run_id = str(claim.run["id"])
        self.attempt = claim.attempt
        self.attempt_id = claim.attempt_id
        self.lease = claim.lease
        root = data_dir / "local-runs" / self.run_id
        self.checkpoint_dir: Path | None = root / "checkpoints"
        self.artifact_dir: Path | None = root / "artifacts"
        for directory in (self.checkpoint_dir, self.artifact_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self._locate(info.archive, actor)
        self._heartbeat_interval_s = heartbeat_interval_s
        self._clock = clock
        self._next_beat = clock() + heartbeat_interval_s
        self._stop = False
        self._checkpoint: str | None = None  # the pending request's time, from heartbeats
        self._ended = False
        self._at = timestamps.EpochCache()

    def _locate(self, archive: bool, actor: str) -> None:
        """Record where the run's artifact files are and, when asked, that ``runyard sync``
        archives them (an ``archive_requested`` event, which travels with the run)."""
        from runyard import placement

        assert self.artifact_dir is not None
        placement.record(self.queue, self.attempt_id, self.lease,
                         artifact_store=str(self.artifact_dir), actor=actor)
        if archive:
            self.queue.add_event(self.run_id, ARCHIVE_REQUESTED,
                                 {"artifact_dir": str(self.artifact_dir)}, actor=actor)

    # ------------------------------------------------------------------ Sink
    def load_config(self) -> dict[str, Any] | None:
        return None

    def write_points(self, points: Sequence[MetricPoint]) -> None:
        if self._ended:
            return
        epoch = self._at.epoch
        self.store.add_metric_points(self.run_id, self.attempt, [
            {"step": p.step, "tag": p.tag, "value": p.value, "at": epoch(p.at)}
            for p in points])

    def write_rows(self, rows: Sequence[sink_mod.MetricRow]) -> None:
        """The compact path: what ``log()`` recorded, straight into the store."""
        if self._ended:
            return
        self.store.add_metric_points(self.run_id, self.attempt, (), rows)

    def write_snapshot(self, snapshot: Mapping[str, Any]) -> None:
        if not self._ended:
            self._fenced(self.queue.record_progress, self.attempt_id, self.lease,
                         nonfinite.to_wire(snapshot))

    def write_event(self, kind: str, details: Mapping[str, Any]) -> None:
        if kind == "warning" and not self._ended:
            self.queue.add_event(self.run_id, "warning",
                                 {"message": str(details.get("message"))[:2000],
                                  "attempt": self.attempt}, actor=local_actor())

    def register_checkpoint(self, record: sink_mod.CheckpointRecord) -> None:
        from runyard.sdk import checkpoint_files

        if self._ended:
            return
        name = sha = size = None
        status = "incomplete"
        packed = checkpoint_files.pack(Path(record.path)) if record.status == "complete" \
            else None
        if packed is not None:
            from runyard.artifacts import LocalBlobStore

            with open(packed.file, "rb") as fh:
                info = LocalBlobStore(self.data_dir / "artifacts").put(
                    fh, expected_sha256=packed.sha256)
            packed.cleanup()
            name, sha, size, status = f"checkpoints/{packed.name}", info.sha256, info.size, \
                "complete"
            self.store.add_artifact(self.run_id, self.attempt, name, "checkpoint", size, sha)
        self.store.add_checkpoint(self.run_id, self.attempt, record.step or 0, status,
                                  name=name, sha256=sha, size=size,
                                  metrics=nonfinite.to_wire(record.metrics))
        self.queue.checkpoint_recorded(self.run_id, self.attempt, {
            "step": record.step, "status": status, "sha256": sha, "attempt": self.attempt},
            actor=local_actor())

    def stop_requested(self) -> bool:
        now = self._clock()
        if not self._ended and now >= self._next_beat:
            self._next_beat = now + self._heartbeat_interval_s
            order = self._fenced(self.queue.heartbeat, self.attempt_id, self.lease,
                                 running=True, actor=local_actor())
            if order is not None and order.stop:
                self._stop = True
            self._checkpoint = None if order is None or order.checkpoint_requested_at is None \
                else timestamps.format_time(order.checkpoint_requested_at)
        return self._stop

    def checkpoint_request(self) -> str | None:
        return None if self._ended else self._checkpoint  # from the last heartbeat

    def close(self, status: str, details: Mapping[str, Any]) -> None:
        try:
            if not self._ended:
                clean = nonfinite.to_wire(dict(details))
                if status == "completed":
                    self._fenced(self.queue.complete, self.attempt_id, self.lease,
                                 exit_code=0, details=clean, actor=local_actor())
                else:
                    tail = str(details.get("traceback") or "").splitlines()
                    stopped = status == "stopped"
                    self._fenced(self.queue.fail, self.attempt_id, self.lease,
                                 reason="stopped" if stopped else "user_error",
                                 exit_code=None if stopped else 1, stderr_tail=tail,
                                 details=clean, actor=local_actor())
        finally:
            self.store.close()

    def _fenced(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call a leased queue method; a lapsed lease (the run was ended) ends the sink."""
        try:
            return fn(*args, **kwargs)
        except errors.LeaseConflict:
            self._ended = self._stop = True
            raise
