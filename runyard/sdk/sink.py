"""Where a run's tracking data goes: the :class:`Sink` protocol and :func:`select_sink`.

The SDK's background thread is the only caller of a sink, so implementations need not be
thread-safe and may block (the training loop never waits on them). Modes:

* ``agent``  - under a Runyard agent: the files of PRODUCT.md section 5 (:mod:`.file_sink`).
* ``http``   - ``RUNYARD_SERVER`` (or ``runyard.configure(server=...)``) set: batches to the
  server from the background thread, spooled to disk while it is away (:mod:`.http_sink`).
* ``embedded`` - no agent, no server: the embedded SQLite store of the data directory, which
  ``runyard up`` shows (:mod:`.store_sink`).
* ``local``  - the same, when SQLAlchemy (the ``server`` extra) is not installed: the files of
  section 5 under ``<data dir>/local-runs/<run_id>/`` (:class:`.file_sink.LocalDirSink`).
  ``import runyard`` and the SDK's base install stay light; ``runyard sync`` uploads both.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from runyard.progress.metrics_stream import MetricPoint


@dataclass(frozen=True, slots=True)
class CheckpointRecord:
    """A checkpoint the training script registered, for the agent (or server) to upload."""

    path: str
    step: int | None
    metrics: dict[str, float]
    status: str  # "complete" when the path existed at registration, else "incomplete"
    at: str


@dataclass(frozen=True, slots=True)
class RunInfo:
    """What the SDK knows about the run when it selects a sink."""

    name: str | None = None
    project: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


#: What ``log()`` recorded: ``(step, time in UNIX seconds, {tag: value})``. A sink that has
#: ``write_rows(rows)`` gets these directly (no object per point); else ``write_points``.
MetricRow = tuple[int, float, dict[str, float]]


@runtime_checkable
class Sink(Protocol):
    """The narrow seam between the SDK core and a destination (file, HTTP, store)."""

    #: ``agent``, ``local``, ``http`` or ``embedded``.
    mode: str
    run_id: str
    attempt: int
    checkpoint_dir: Path | None
    artifact_dir: Path | None

    def load_config(self) -> dict[str, Any] | None:
        """The run's config as the orchestrator validated it, or None when there is none."""

    def write_points(self, points: Sequence[MetricPoint]) -> None:
        """Record a batch of metric points (in logging order)."""

    def write_snapshot(self, snapshot: Mapping[str, Any]) -> None:
        """Replace the latest progress snapshot (a ``runyard.progress/v1`` object)."""

    def write_event(self, kind: str, details: Mapping[str, Any]) -> None:
        """Record a run event such as ``stop_requested`` or ``warning``."""

    def register_checkpoint(self, record: CheckpointRecord) -> None:
        """Record a checkpoint for upload."""

    def stop_requested(self) -> bool:
        """Whether someone asked this run to stop. Called a few times a second."""

    def close(self, status: str, details: Mapping[str, Any]) -> None:
        """Record the final status (``completed``, ``failed``, ``stopped``) and release."""


def data_dir(env: Mapping[str, str]) -> Path:
    """``$RUNYARD_DATA_DIR``, else ``$XDG_DATA_HOME/runyard``, else ``~/.runyard``."""
    from runyard.sdk import settings

    return settings.data_dir(env)


def new_run_id() -> str:
    """A fresh id for a run started by hand."""
    return uuid.uuid4().hex


_NAME_BAD = re.compile(r"[^A-Za-z0-9._:+@/-]+")


def default_name() -> str:
    """A run name when none was given: the script's name, else ``notebook``, plus the time."""
    main = sys.modules.get("__main__")
    script = getattr(main, "__file__", None)
    stem = Path(script).stem if script else "notebook"
    stem = _NAME_BAD.sub("-", stem).strip("._:+@/-") or "run"
    return f"{stem[:150]}-{time.strftime('%Y%m%d-%H%M%S')}"


class EpochCache:
    """ISO 8601 timestamps to UNIX seconds, parsing each distinct value once in a row
    (the points of one ``log()`` call share their timestamp)."""

    def __init__(self) -> None:
        self._last: str | None = None
        self._value: float | None = None

    def epoch(self, at: str | None) -> float | None:
        if at == self._last:
            return self._value
        try:
            value = None if at is None else datetime.fromisoformat(at).timestamp()
        except ValueError:
            value = None
        self._last, self._value = at, value
        return value


def embedded_available() -> bool:
    """Whether the embedded store can be used (SQLAlchemy and alembic are installed)."""
    return all(importlib.util.find_spec(m) is not None for m in ("sqlalchemy", "alembic"))


Warn = Callable[[str, str], object]


def _no_warn(key: str, message: str) -> None:
    return None


def select_sink(env: Mapping[str, str] | None = None, info: RunInfo | None = None, *,
                warn: Warn = _no_warn) -> Sink:
    """The one place that decides where a run reports. Never raises for a missing set-up.

    Order: agent files (``RUNYARD_PROGRESS_FILE``) win, then a server (``RUNYARD_SERVER`` or
    ``runyard.configure``), then the embedded store, then the local directory. A server that
    cannot be reached when the run starts is warned about and the run recorded locally
    (``runyard sync`` uploads it later): training never waits for the network.
    """
    from runyard import errors
    from runyard.sdk import file_sink, settings  # local imports: only the chosen mode loads

    env = os.environ if env is None else env
    info = info or RunInfo()
    if env.get("RUNYARD_PROGRESS_FILE"):
        return file_sink.FileSink.from_env(env)
    cfg = settings.resolve(env)
    assert cfg.data_dir is not None
    if cfg.server:
        from runyard.sdk import http_sink

        try:
            return http_sink.HttpSink.create(cfg, info, warn=warn)
        except errors.RunyardError as exc:
            warn("http-start", f"runyard: cannot start the run on {cfg.server} ({exc.message}); "
                 "recording it locally instead -- `runyard sync` uploads it later")
    if embedded_available():
        from runyard.sdk import store_sink

        try:
            return store_sink.StoreSink(cfg.data_dir, info,
                                        heartbeat_interval_s=cfg.heartbeat_interval_s)
        except errors.RunyardError as exc:  # e.g. a database from a newer Runyard
            warn("embedded", f"runyard: the embedded store in {cfg.data_dir} is unusable "
                 f"({exc.message}); recording the run as files instead")
    return file_sink.LocalDirSink.create(cfg.data_dir, info)
