"""Local runs read into one shape for upload: the embedded store and the local-run files.

A :class:`LocalRun` is the body of ``POST /v1/runs/import`` plus lazy access to its metric
rows and checkpoints, whichever of the two places recorded it. Only ended runs are synced:
a run whose process died without finishing is ended first (``lost`` for the embedded store,
through the same sweep the server runs; ``failed`` for a files run whose process is gone).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runyard import defaults, errors, fields, nonfinite, timestamps
from runyard.progress.reader import MetricsTail, read_snapshot
from runyard.sdk.store_sink import ARCHIVE_REQUESTED

#: Points per upload request.
ROWS_PER_REQUEST = 20_000
ENDED = ("completed", "failed", "stopped", "cancelled")


@dataclass
class CheckpointFile:
    attempt: int
    step: int
    status: str
    metrics: dict[str, Any]
    name: str | None = None
    sha256: str | None = None
    #: Where its bytes are: a blob in the local blob store, or the file/directory itself.
    path: Path | None = None


@dataclass
class LocalRun:
    """One local run: the import body, and readers for the rest."""

    run_id: str
    where: str  # "embedded" or "files"
    record: dict[str, Any]
    points: Any = None  # () -> Iterator[tuple[attempt, list[row]]]
    checkpoints: list[CheckpointFile] = field(default_factory=list)
    #: The artifact directory to archive on the server, for a run that asked for it.
    archive_dir: Path | None = None


def _epoch(at: Any) -> float | None:
    if isinstance(at, int | float) and not isinstance(at, bool):
        return float(at)
    if isinstance(at, str):
        try:
            return timestamps.parse_iso(at).timestamp()
        except ValueError:
            return None
    return None


# --------------------------------------------------------------------------- embedded store


def embedded_runs(data_dir: Path) -> Iterator[LocalRun]:
    """Ended local runs of the embedded store in ``data_dir`` (none when it has no database)."""
    if not (data_dir / "runyard.db").exists():
        return
    from runyard.queue import Queue
    from runyard.store import RunFilter, default_url, open_store

    store = open_store(default_url(data_dir))
    try:
        Queue(store).sweep()  # a local run whose process was killed ends as `lost` here
        after: str | None = None
        while True:
            page = store.list_runs(RunFilter(status=ENDED), after_id=after, limit=200,
                                   sort="created_at")
            for row in page:
                if row.get("executor") == "local" and not str(
                        row.get("source") or "").startswith("sync:"):
                    yield _embedded_run(store, row, data_dir)
            if len(page) < 200:
                return
            after = page[-1]["id"]
    finally:
        store.close()


def _embedded_run(store: Any, row: dict[str, Any], data_dir: Path) -> LocalRun:
    run_id = row["id"]
    attempts = [{k: a.get(k) for k in ("number", "host_id", "claimed_at", "running_at",
                                       "ended_at", "termination_reason", "exit_code",
                                       "details", "workdir")}
                for a in store.list_attempts(run_id)]
    events: list[dict[str, Any]] = []
    after = 0
    while True:
        page = store.list_events(run_id, after_seq=after, limit=1000)
        events += [{k: e.get(k) for k in ("seq", "attempt", "at", "kind", "status", "actor",
                                          "details")} for e in page]
        if len(page) < 1000:
            break
        after = page[-1]["seq"]
    run = {k: row.get(k) for k in ("id", "name", "project", "version", "notes", "config",
                                   "status", "termination_reason", "exit_code", "created_at",
                                   "started_at", "ended_at", "host_id", "workdir", "progress",
                                   "progress_updated_at", "artifact_store")}
    def points() -> Iterator[tuple[int, list[list[Any]]]]:
        # Re-open: the generator runs after embedded_runs() closed its store.
        from runyard.store import default_url, open_store

        st = open_store(default_url(data_dir), upgrade=False)
        try:
            for tag in (t["tag"] for t in st.metric_tags(run_id)):
                for number in sorted({int(a["number"]) for a in attempts} or {1}):
                    after_step: int | None = None
                    while True:
                        page = st.list_metric_points(run_id, tag=tag, after_step=after_step,
                                                     attempt=number, limit=ROWS_PER_REQUEST)
                        if not page:
                            break
                        yield number, [[p["step"], p["at"], {tag: p["value"]}] for p in page]
                        if len(page) < ROWS_PER_REQUEST:
                            break
                        after_step = page[-1]["step"]
        finally:
            st.close()

    ckpts = [CheckpointFile(attempt=c["attempt"], step=c["step"], status=c["status"],
                            metrics=dict(c.get("metrics") or {}), name=c.get("name"),
                            sha256=c.get("sha256"))
             for c in store.list_checkpoints(run_id)]
    return LocalRun(run_id, "embedded", {"run": run, "attempts": attempts, "events": events},
                    points, ckpts, _archive_dir(events, data_dir / "local-runs" / run_id))


def _archive_dir(events: list[dict[str, Any]], root: Path) -> Path | None:
    """Where the run that asked to be archived keeps its artifacts (its request's event)."""
    for ev in events:
        if ev.get("kind") == ARCHIVE_REQUESTED:
            named = (ev.get("details") or {}).get("artifact_dir")
            return Path(named) if isinstance(named, str) and named else root / "artifacts"
    return None


# --------------------------------------------------------------------------- local-run files


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _jsonl(path: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    try:
        text = path.read_text("utf-8")
    except OSError:
        return out
    for line in text.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


def _local_host(host: Any) -> str:
    """The host a files run records, as the other local runs do (``local/<host>``)."""
    try:
        return fields.local_host(host)
    except errors.ValidationError:  # a run.json from before, or a host name out of bounds
        return "local"


def file_runs(data_dir: Path) -> Iterator[LocalRun]:
    """Runs recorded as files (``<data dir>/local-runs/<id>/run.json``), ended ones only."""
    root = data_dir / "local-runs"
    if not root.is_dir():
        return
    for directory in sorted(root.iterdir()):
        meta_path = directory / "run.json"
        if not meta_path.is_file():
            continue  # an HTTP or embedded run's scratch directory
        try:
            meta = json.loads(meta_path.read_text("utf-8"))
        except (OSError, ValueError):
            continue
        status = meta.get("status")
        if status == "running":
            if _pid_alive(meta.get("pid")):
                continue  # still training: sync it later
            status = "failed"  # the process died without finishing
        if status not in ENDED or not str(meta.get("run_id") or "").isalnum():
            continue
        yield _file_run(directory, meta, status)


def _file_run(directory: Path, meta: dict[str, Any], status: str) -> LocalRun:
    run_id = str(meta["run_id"])
    events_in = _jsonl(directory / "events.jsonl")
    final: dict[str, Any] = next(
        (e for e in reversed(events_in) if e.get("kind") == "status"), {})
    started, ended = _epoch(meta.get("started_at")), _epoch(meta.get("ended_at"))
    snap = read_snapshot(directory / "progress.json").snapshot
    try:
        config = json.loads((directory / "config.json").read_text("utf-8"))
    except (OSError, ValueError):
        config = {}
    reason = {"completed": "completed", "stopped": "stopped"}.get(status, "user_error")
    run = {"id": run_id, "name": meta.get("name") or f"local-{run_id[:8]}",
           "project": meta.get("project"), "config": config if isinstance(config, dict) else {},
           "status": status, "termination_reason": reason,
           "exit_code": 0 if status == "completed" else (1 if status == "failed" else None),
           "created_at": started, "started_at": started, "ended_at": ended or started,
           "host_id": _local_host(meta.get("host_id")), "workdir": meta.get("cwd"),
           "artifact_store": str(directory / "artifacts"),
           "progress": nonfinite.to_wire(snap) if snap else None,
           "progress_updated_at": _epoch(snap.get("updated_at")) if snap else None}
    attempts = [{"number": 1, "host_id": run["host_id"], "workdir": run["workdir"],
                 "claimed_at": started,
                 "running_at": started, "ended_at": ended, "termination_reason": reason,
                 "exit_code": run["exit_code"],
                 "details": {k: v for k, v in final.items() if k not in ("at", "kind")}}]
    events = [{"attempt": 1, "at": _epoch(e.get("at")), "status": "running"
               if e.get("kind") != "status" else status,
               "kind": "status" if e.get("kind") == "status" else str(e.get("kind")),
               "actor": "local", "details": {k: v for k, v in e.items()
                                             if k not in ("at", "kind")}}
              for e in events_in]

    def points() -> Iterator[tuple[int, list[list[Any]]]]:
        batch = MetricsTail(directory / "metrics.jsonl").read_all()
        rows: list[list[Any]] = []
        for p in batch.points:
            # The SDK keeps within the server's bounds; a point another writer added beyond
            # them would make the server refuse the whole request, so it stays behind.
            if p.step > defaults.METRIC_STEP_MAX or len(p.tag) > defaults.METRIC_NAME_MAX:
                continue
            rows.append([p.step, _epoch(p.at), {p.tag: nonfinite.encode(p.value)}])
            if len(rows) >= ROWS_PER_REQUEST:
                yield 1, rows
                rows = []
        if rows:
            yield 1, rows

    ckpts = []
    for c in _jsonl(directory / "checkpoints.jsonl"):
        path = Path(str(c.get("path") or ""))
        raw_step = c.get("step")
        step = raw_step if isinstance(raw_step, int) else 0
        ckpts.append(CheckpointFile(attempt=1, step=step, status=str(c.get("status")),
                                    metrics=dict(c.get("metrics") or {}), path=path))
    return LocalRun(run_id, "files", {"run": run, "attempts": attempts, "events": events},
                    points, ckpts, directory / "artifacts" if meta.get("archive") is True
                    else None)
