"""Upload local runs to a server, idempotently; replay HTTP spools left by an outage.

Each run is created with its own id (``POST /v1/runs/import``: 201 new, 200 known), then its
points (upserts), then its checkpoints, then, for a run that asked for it, its artifact
directory (which archives it on the server); only when all of that went through is the run noted
in ``<data dir>/synced.json`` for that server, so an interrupted sync resends (harmlessly)
and a finished one is skipped next time: running ``runyard sync`` twice creates nothing new.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runyard import errors, nonfinite
from runyard.client.http import Http
from runyard.progress import snapshot as snapshot_mod
from runyard.sdk import artifact_bundle, checkpoint_files
from runyard.sdk.http_sink import run_spool
from runyard.sync import records

MARKER_FILE = "synced.json"


@dataclass
class SyncReport:
    """What a sync did; printed by the CLI."""

    created: list[str] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)  # known to the server, data resent
    skipped: list[str] = field(default_factory=list)  # synced before
    points: int = 0
    checkpoints: int = 0
    spools_sent: list[str] = field(default_factory=list)
    spools_dropped: list[str] = field(default_factory=list)
    #: Runs whose artifact directory reached the server's store.
    archived: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class Marker:
    """The ids of runs fully synced to each server, in ``<data dir>/synced.json``."""

    def __init__(self, data_dir: Path, server: str) -> None:
        self.path = data_dir / MARKER_FILE
        self.server = server
        try:
            data = json.loads(self.path.read_text("utf-8"))
        except (OSError, ValueError):
            data = {}
        self.data: dict[str, list[str]] = data if isinstance(data, dict) else {}
        self.ids = set(self.data.get(server, []))

    def has(self, run_id: str) -> bool:
        return run_id in self.ids

    def add(self, run_id: str) -> None:
        self.ids.add(run_id)
        self.data[self.server] = sorted(self.ids)
        snapshot_mod.write_json_atomic(self.path, self.data)


def origin(data_dir: Path) -> str:
    return f"{socket.gethostname()}:{data_dir}"


def sync(data_dir: Path, http: Http, *, dry_run: bool = False) -> SyncReport:
    """Upload every ended local run of ``data_dir`` not yet synced to ``http``'s server."""
    report = SyncReport()
    marker = Marker(data_dir, http.server)
    runs: Iterable[records.LocalRun] = list(records.embedded_runs(data_dir)) + list(
        records.file_runs(data_dir))
    for run in runs:
        if marker.has(run.run_id):
            report.skipped.append(run.run_id)
            continue
        if dry_run:
            report.created.append(run.run_id)
            continue
        try:
            _upload(data_dir, http, run, report)
        except errors.TransportError:
            raise  # the server is gone: stop, the next sync starts over
        except errors.RunyardError as exc:
            report.problems.append(f"run {run.run_id}: {exc.message}")
            continue
        marker.add(run.run_id)
    if not dry_run:
        replay_spools(data_dir, http, report)
    return report


def _upload(data_dir: Path, http: Http, run: records.LocalRun, report: SyncReport) -> None:
    answer = http.post_json("/v1/runs/import", {**run.record, "origin": origin(data_dir)})
    (report.created if answer.get("created") else report.completed).append(run.run_id)
    for attempt, rows in run.points():
        out = http.post_json(f"/v1/runs/{run.run_id}/import/metrics",
                             {"attempt": attempt, "rows": rows})
        report.points += int(out.get("written", 0))
    for ck in run.checkpoints:
        _upload_checkpoint(data_dir, http, run, ck)
        report.checkpoints += 1
    if run.archive_dir is not None:
        attempts = run.record.get("attempts") or [{}]
        _archive(http, run.run_id, run.archive_dir, report,
                 imported=int(attempts[-1].get("number") or 1))


def _upload_checkpoint(data_dir: Path, http: Http, run: records.LocalRun,
                       ck: records.CheckpointFile) -> None:
    body: dict[str, Any] = {"attempt": ck.attempt, "step": ck.step, "status": "incomplete",
                            "metrics": nonfinite.to_wire(ck.metrics), "name": ck.name}
    if ck.status == "complete":
        blob: Path | None = None
        packed = None
        sha = ck.sha256
        if sha is not None:  # the embedded store's blob
            from runyard.artifacts import LocalBlobStore

            store = LocalBlobStore(data_dir / "artifacts")
            if store.exists(sha):
                blob = store._path(sha)  # the local store's own layout
        elif ck.path is not None:
            packed = checkpoint_files.pack(ck.path)
            if packed is not None:
                blob, sha = packed.file, packed.sha256
                body["name"] = body["name"] or f"checkpoints/{packed.name}"
        if blob is not None and sha is not None:
            name = body["name"] or f"checkpoints/step-{ck.step}"
            with open(blob, "rb") as fh:
                http.request("PUT", f"/v1/runs/{run.run_id}/import/artifacts/{name}",
                             params={"attempt": ck.attempt, "kind": "checkpoint"},
                             content=fh.read(), headers={"X-Content-SHA256": sha})
            body.update(status="complete", sha256=sha, name=name)
        if packed is not None:
            packed.cleanup()
    http.post_json(f"/v1/runs/{run.run_id}/import/checkpoints", body)


def _archive(http: Http, run_id: str, directory: Path, report: SyncReport, *,
             imported: int | None = None, attempt_id: str | None = None,
             lease: str | None = None) -> None:
    """Pack the run's artifact directory and upload it: through the ended run's import
    (``imported``: its last attempt's number) or with the attempt's lease. A directory that
    is gone is a problem reported, not a reason to hold back the rest of the run."""
    try:
        bundle = artifact_bundle.pack(directory)
    except (errors.NotFound, errors.ConfigError) as exc:
        report.problems.append(f"run {run_id}: not archived: {exc.message}")
        return
    if bundle is None:
        return  # nothing in it: nothing to archive
    if imported is not None:
        (path, query), headers = artifact_bundle.import_upload(run_id, imported), {}
    else:
        assert attempt_id is not None and lease is not None
        (path, query), headers = artifact_bundle.leased_upload(run_id, attempt_id), {
            "X-Runyard-Lease": lease}
    try:
        with open(bundle.file, "rb") as fh:
            http.request("PUT", path, params=query, content=fh, headers={
                **headers, "X-Content-SHA256": bundle.sha256,
                "Content-Type": "application/octet-stream", "Content-Length": str(bundle.size)})
    finally:
        bundle.cleanup()
    report.archived.append(run_id)


def replay_spools(data_dir: Path, http: Http, report: SyncReport) -> None:
    """Send what HTTP-mode runs spooled and could not deliver before they ended."""
    root = data_dir / "local-runs"
    if not root.is_dir():
        return
    for spool_dir in sorted(root.glob("*/spool")):
        spool = run_spool(spool_dir)
        meta = spool.read_meta()
        if not meta or not spool.pending:
            continue
        if str(meta.get("server", "")).rstrip("/") != http.server:
            report.problems.append(f"spool of run {meta.get('run_id')} belongs to "
                                   f"{meta.get('server')}; sync with --server there")
            continue
        ended: str | None = None  # why the lease was refused: then only points and archive go
        for op, end in spool.entries():
            try:
                if ended is None:
                    _replay_op(http, meta, op, report)
                else:
                    _after_end(http, meta, op, report)
            except errors.Conflict as exc:
                if ended is not None:
                    raise
                ended = exc.message
                _after_end(http, meta, op, report)
            spool.ack(end)
        spool.remove()
        if ended is None:
            report.spools_sent.append(str(meta.get("run_id")))
        else:
            report.spools_dropped.append(f"{meta.get('run_id')}: {ended} (its points were "
                                         "still delivered; its status and snapshots not)")


def _replay_op(http: Http, meta: dict[str, Any], op: dict[str, Any],
               report: SyncReport) -> None:
    if "checkpoint" in op:
        _replay_checkpoint(http, meta, op["checkpoint"])
    elif "archive" in op:
        _archive(http, str(meta["run_id"]), Path(str(op["archive"].get("dir"))), report,
                 attempt_id=str(meta["attempt_id"]), lease=str(meta["lease"]))
    else:
        http.request("POST", op["path"], content=json.dumps(
            op["body"], separators=(",", ":")).encode(),
            headers={"Content-Type": "application/json"})


def _after_end(http: Http, meta: dict[str, Any], op: dict[str, Any],
               report: SyncReport) -> None:
    """What still goes once the server ended the run: its points and its archive."""
    if str(op.get("path", "")).endswith("/metrics"):
        _import_points(http, meta, op)
    elif "archive" in op:
        _archive(http, str(meta["run_id"]), Path(str(op["archive"].get("dir"))), report,
                 imported=int(meta.get("attempt") or 1))


def _import_points(http: Http, meta: dict[str, Any], op: dict[str, Any]) -> None:
    """Points of a run the server already ended, through its import endpoint."""
    body = op.get("body") or {}
    http.post_json(f"/v1/runs/{meta['run_id']}/import/metrics", {
        "attempt": int(meta.get("attempt") or 1), "rows": body.get("rows", []),
        "points": body.get("points", [])})


def _replay_checkpoint(http: Http, meta: dict[str, Any], ck: dict[str, Any]) -> None:
    """A spooled checkpoint: upload its file with the run's lease, then register it."""
    run_id, attempt_id, lease = meta["run_id"], meta["attempt_id"], meta["lease"]
    body: dict[str, Any] = {"lease": lease, "step": ck.get("step") or 0,
                            "status": "incomplete", "metrics": ck.get("metrics") or {}}
    packed = checkpoint_files.pack(Path(str(ck.get("path")))) \
        if ck.get("status") == "complete" else None
    if packed is not None:
        name = f"checkpoints/{packed.name}"
        try:
            with open(packed.file, "rb") as fh:
                http.request("PUT", f"/v1/runs/{run_id}/artifacts/{name}",
                             params={"attempt_id": attempt_id, "kind": "checkpoint"},
                             content=fh.read(), headers={"X-Content-SHA256": packed.sha256,
                                                         "X-Runyard-Lease": lease})
        finally:
            packed.cleanup()
        body.update(status="complete", name=name, sha256=packed.sha256, size=packed.size)
    http.post_json(f"/v1/attempts/{attempt_id}/checkpoints", body)
