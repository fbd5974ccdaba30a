"""Where a run's tracking data goes: the :class:`Sink` protocol and :func:`select_sink`.

The SDK's background thread is the only caller of a sink, so implementations need not be
thread-safe and may block (the training loop never waits on them). Modes:

* ``agent``  - under a Runyard agent: the files of PRODUCT.md section 5 (:mod:`.file_sink`).
* ``local``  - no agent, no server: the same files under ``<data dir>/local-runs/<run_id>/``.
* ``http``   - ``RUNYARD_SERVER`` set: batches to the server (built later, plugs in below).
* ``embedded`` - the embedded store replacing ``local`` (built later, plugs in below).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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
    if env.get("RUNYARD_DATA_DIR"):
        return Path(env["RUNYARD_DATA_DIR"]).expanduser()
    if env.get("XDG_DATA_HOME"):
        return Path(env["XDG_DATA_HOME"]).expanduser() / "runyard"
    return Path("~/.runyard").expanduser()


def new_run_id() -> str:
    """A fresh id for a run started by hand."""
    return uuid.uuid4().hex


def select_sink(env: Mapping[str, str] | None = None, info: RunInfo | None = None) -> Sink:
    """The one place that decides where a run reports. Never raises for a missing set-up.

    Order: agent files (``RUNYARD_PROGRESS_FILE``) win, then a server (``RUNYARD_SERVER``),
    then the local data directory.
    """
    from runyard.sdk import file_sink  # local import: only the chosen mode is loaded

    env = os.environ if env is None else env
    info = info or RunInfo()
    if env.get("RUNYARD_PROGRESS_FILE"):
        return file_sink.FileSink.from_env(env)
    if env.get("RUNYARD_SERVER"):
        # Plug-in point for the HTTP sink (runyard.sdk.http_sink.HttpSink.from_env(env, info)).
        # Until it exists the data is kept locally rather than lost.
        pass
    # Plug-in point for the embedded store, which replaces the local directory.
    return file_sink.LocalDirSink.create(data_dir(env), info)
