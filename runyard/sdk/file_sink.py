"""File sinks: the agent-mode files of docs/progress-protocol.md, and a local run directory.

Beside the snapshot and the metrics stream, two JSON Lines files sit next to the metrics
file for the agent to read:

* ``checkpoints.jsonl`` - ``{"path", "step", "metrics", "status", "at"}`` per registered
  checkpoint (the agent uploads them);
* ``events.jsonl`` - ``{"at", "kind", ...details}``: ``start``, ``stop_requested``,
  ``warning``, and last ``status`` with ``status`` and, for failures, ``traceback``.

Two files are watched instead: the stop file and the checkpoint request file
(:class:`RequestWatch`).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from runyard import errors, local, nonfinite, timestamps
from runyard.progress import snapshot as snapshot_mod
from runyard.progress.metrics_stream import MetricPoint, MetricsStreamWriter
from runyard.sdk import names
from runyard.sdk import sink as sink_mod

CHECKPOINTS_FILE = "checkpoints.jsonl"
EVENTS_FILE = "events.jsonl"


@dataclass(frozen=True, slots=True)
class FilePaths:
    """Every path a file sink writes or watches."""

    progress_file: Path
    metrics_file: Path
    checkpoints_file: Path
    events_file: Path
    stop_file: Path | None = None
    checkpoint_request_file: Path | None = None
    config_file: Path | None = None
    checkpoint_dir: Path | None = None
    artifact_dir: Path | None = None


def _append_json(path: Path, obj: Mapping[str, Any]) -> None:
    line = json.dumps(nonfinite.to_wire(obj), ensure_ascii=False, allow_nan=False,
                      default=str)
    with open(path, "a", encoding="utf-8", newline="\n") as fh:
        fh.write(line + "\n")


class RequestWatch:
    """Which checkpoint request a request file names, if it is there: its text (the agent
    writes the server's request time), or its identity on disk when it is empty or
    unreadable (a file made by hand). One ``stat()`` a call; read only when it changed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._key: tuple[int, int, int] | None = None
        self._name: str | None = None

    def current(self) -> str | None:
        try:
            st = os.stat(self.path)
        except OSError:
            self._key = self._name = None
            return None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if key != self._key:
            self._key = key
            try:
                text = self.path.read_text("utf-8", errors="replace").strip()[:256]
            except OSError:
                text = ""
            self._name = text or f"{st.st_ino}:{st.st_mtime_ns}"
        return self._name


def read_config_file(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``RUNYARD_CONFIG_FILE``; None when the file does not exist."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise errors.ConfigError(f"RUNYARD_CONFIG_FILE: cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise errors.ConfigError(
            f"RUNYARD_CONFIG_FILE: expected a JSON object in {path}, got {type(data).__name__}"
        )
    return data


class FileSink:
    """Writes the protocol files; the agent probes and forwards them."""

    mode = "agent"
    #: Points written at a time at most: the agent forwards what is in the file, so a fast
    #: loop's first points reach it sooner (a write costs one system call).
    batch_points = 10_000

    def __init__(self, paths: FilePaths, *, run_id: str, attempt: int = 1) -> None:
        self.paths = paths
        self.run_id = run_id
        self.attempt = attempt
        self.checkpoint_dir = paths.checkpoint_dir
        self.artifact_dir = paths.artifact_dir
        for directory in {paths.progress_file.parent, paths.metrics_file.parent}:
            directory.mkdir(parents=True, exist_ok=True)
        self._metrics = MetricsStreamWriter(paths.metrics_file)
        request = paths.checkpoint_request_file
        self._request = RequestWatch(request) if request is not None else None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> FileSink:
        """The agent-mode sink from ``RUNYARD_*`` variables (``RUNYARD_PROGRESS_FILE`` set)."""
        progress = env.get("RUNYARD_PROGRESS_FILE")
        if not progress:
            raise errors.ConfigError("RUNYARD_PROGRESS_FILE: not set")
        progress_path = Path(progress)
        metrics = Path(env.get("RUNYARD_METRICS_FILE") or progress_path.with_name("metrics.jsonl"))
        try:
            attempt = int(env.get("RUNYARD_ATTEMPT") or 1)
        except ValueError:
            attempt = 1

        def opt(name: str) -> Path | None:
            value = env.get(name)
            return Path(value) if value else None

        paths = FilePaths(
            progress_file=progress_path,
            metrics_file=metrics,
            checkpoints_file=metrics.with_name(CHECKPOINTS_FILE),
            events_file=metrics.with_name(EVENTS_FILE),
            stop_file=opt("RUNYARD_STOP_FILE"),
            checkpoint_request_file=opt("RUNYARD_CHECKPOINT_REQUEST_FILE"),
            config_file=opt("RUNYARD_CONFIG_FILE"),
            checkpoint_dir=opt("RUNYARD_CHECKPOINT_DIR"),
            artifact_dir=opt("RUNYARD_ARTIFACT_DIR"),
        )
        return cls(paths, run_id=env.get("RUNYARD_RUN_ID") or names.new_run_id(),
                   attempt=attempt)

    def load_config(self) -> dict[str, Any] | None:
        path = self.paths.config_file
        return read_config_file(path) if path is not None else None

    def write_points(self, points: Sequence[MetricPoint]) -> None:
        self._metrics.write_points(points)

    def write_rows(self, rows: Sequence[sink_mod.MetricRow]) -> None:
        """The SDK's compact path: the lines of ``write_points`` with no object per point."""
        self._metrics.write_rows(rows)

    def write_snapshot(self, snapshot: Mapping[str, Any]) -> None:
        snapshot_mod.write_snapshot(self.paths.progress_file, snapshot)

    def write_event(self, kind: str, details: Mapping[str, Any]) -> None:
        _append_json(self.paths.events_file,
                     {"at": timestamps.format_time(), "kind": kind, **details})

    def register_checkpoint(self, record: sink_mod.CheckpointRecord) -> None:
        _append_json(self.paths.checkpoints_file, asdict(record))

    def stop_requested(self) -> bool:
        stop = self.paths.stop_file
        return stop is not None and stop.exists()

    def checkpoint_request(self) -> str | None:
        """The pending checkpoint request's name, while the request file is there."""
        return self._request.current() if self._request is not None else None

    def close(self, status: str, details: Mapping[str, Any]) -> None:
        self.write_event("status", {"status": status, **details})
        self._metrics.close()


class LocalDirSink(FileSink):
    """A run started by hand with no agent and no server: the same files in one directory.

    ``<data dir>/local-runs/<run_id>/`` holds ``run.json`` (name, project, status, whether
    ``runyard sync`` archives the artifacts...),
    ``config.json``, ``progress.json``, ``metrics.jsonl``, ``checkpoints.jsonl``,
    ``events.jsonl``, ``checkpoints/``, ``artifacts/``; creating a file named ``STOP``
    there asks the run to stop, one named ``CHECKPOINT`` asks it for a checkpoint (removed
    when the run registers one). The embedded store will replace this sink.
    """

    mode = "local"

    def __init__(self, root: Path, info: sink_mod.RunInfo, run_id: str) -> None:
        self.root = root
        self.info = info
        paths = FilePaths(
            progress_file=root / "progress.json",
            metrics_file=root / "metrics.jsonl",
            checkpoints_file=root / CHECKPOINTS_FILE,
            events_file=root / EVENTS_FILE,
            stop_file=root / "STOP",
            checkpoint_request_file=root / "CHECKPOINT",
            config_file=root / "config.json",
            checkpoint_dir=root / "checkpoints",
            artifact_dir=root / "artifacts",
        )
        super().__init__(paths, run_id=run_id, attempt=1)
        self.started_at = timestamps.format_time()
        for directory in (paths.checkpoint_dir, paths.artifact_dir):
            assert directory is not None
            directory.mkdir(parents=True, exist_ok=True)
        (root / "config.json").write_text(
            json.dumps(nonfinite.to_wire(info.config), indent=2, default=str), "utf-8")
        self._write_run_json("running")

    @classmethod
    def create(cls, data_dir: Path, info: sink_mod.RunInfo) -> LocalDirSink:
        """Make the run directory under ``data_dir/local-runs``."""
        run_id = info.run_id or names.new_run_id()
        root = local.ensure_data_dir(data_dir) / "local-runs" / run_id
        root.mkdir(parents=True, exist_ok=True)
        return cls(root, info, run_id)

    def _write_run_json(self, status: str, **extra: Any) -> None:
        meta = {"run_id": self.run_id, "name": self.info.name, "project": self.info.project,
                "executor": "local", "status": status, "started_at": self.started_at,
                "cwd": os.getcwd(), "host_id": socket.gethostname() or "local",
                "pid": os.getpid(), "tags": self.info.tags,
                "archive": self.info.archive, **extra}
        snapshot_mod.write_json_atomic(self.root / "run.json", meta)

    def load_config(self) -> dict[str, Any] | None:
        return None  # the config is the one passed to start_run; config.json is its record

    def register_checkpoint(self, record: sink_mod.CheckpointRecord) -> None:
        super().register_checkpoint(record)
        if self.paths.checkpoint_request_file is not None:  # answered: no agent removes it
            self.paths.checkpoint_request_file.unlink(missing_ok=True)

    def close(self, status: str, details: Mapping[str, Any]) -> None:
        super().close(status, details)
        self._write_run_json(status, ended_at=timestamps.format_time())
