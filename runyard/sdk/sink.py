"""The seam between the SDK core and where a run's data goes: :class:`Sink` and its values.

The SDK's background thread is the only caller of a sink, so implementations need not be
thread-safe and may block (the training loop never waits on them). The implementations are
:mod:`.file_sink` (``agent`` and ``local`` modes), :mod:`.http_sink` (``http``) and
:mod:`.store_sink` (``embedded``); :mod:`.choose` picks one (see docs/sdk.md).
"""

from __future__ import annotations

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
    #: Upload the artifact directory to the server's store at the end (docs/sdk.md,
    #: "Archiving"); a run with no server records the wish for ``runyard sync``.
    archive: bool = False


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
        """Whether someone asked this run to stop. Called a few times a second.

        A sink may also have ``checkpoint_request() -> str | None``, called right after it:
        the name of the pending checkpoint request (a new name is a new request), or None.
        """

    def close(self, status: str, details: Mapping[str, Any]) -> None:
        """Record the final status (``completed``, ``failed``, ``stopped``) and release."""
