"""Typed, frozen views of the server's JSON (docs/http-api.md, the HTTP contract).

Every model keeps the JSON it was parsed from in ``raw`` (for ``--json`` output and fields a
newer server adds). Times become timezone-aware :class:`datetime` objects; a field the server
left out (``fields=`` selection) is ``None``. Runs, their attempts and progress are in
:mod:`runyard.client.run_models`, the readers of JSON values in :mod:`runyard.client.decoding`;
this module names them all (``from runyard.client.models import Run`` works) and holds the
rest: pages, events, metrics, checkpoints, artifacts, logs and workers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from runyard.client.decoding import JSON, opt_int, parse_number, parse_time
from runyard.client.run_models import RELOADABLE, Attempt, Progress, Run, RunActions

__all__ = [
    "JSON", "RELOADABLE", "Artifact", "Attempt", "Checkpoint", "Event", "LogChunk", "MetricPoint",
    "MetricTag", "Page", "Progress", "Run", "RunActions", "Series", "SeriesPoint", "StreamEvent",
    "Worker", "parse_number", "parse_time",
]

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a keyset-paginated list; ``next`` is the cursor of the following page."""

    items: tuple[T, ...]
    next: str | int | None = None

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class Event:
    """One entry of a run's event log (``seq`` has no gaps per run)."""

    seq: int
    run_id: str | None
    status: str | None
    at: datetime | None
    actor: str | None = None
    attempt: int | None = None
    kind: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    id: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: JSON) -> Event:
        return cls(seq=int(data.get("seq", 0)), run_id=data.get("run_id"),
                   status=data.get("status"), at=parse_time(data.get("at"), "event.at"),
                   actor=data.get("actor"), attempt=opt_int(data.get("attempt")),
                   kind=data.get("kind"), details=dict(data.get("details") or {}),
                   id=opt_int(data.get("id")), raw=dict(data))


@dataclass(frozen=True)
class StreamEvent:
    """One server-sent event: its ``event`` type and decoded ``data``.

    ``id`` is the last event id seen on the stream (as a browser's ``EventSource`` keeps it):
    events without their own id, such as ``progress``, repeat the previous one.
    """

    id: str | None
    event: str
    data: Any


@dataclass(frozen=True)
class MetricPoint:
    step: int
    tag: str
    value: float | None
    at: datetime | None = None
    attempt: int | None = None

    @classmethod
    def from_json(cls, data: JSON) -> MetricPoint:
        return cls(step=int(data["step"]), tag=str(data["tag"]),
                   value=parse_number(data.get("value")),
                   at=parse_time(data.get("at"), "metric.at"),
                   attempt=opt_int(data.get("attempt")))


@dataclass(frozen=True)
class MetricTag:
    tag: str
    count: int
    last_step: int | None = None
    last_value: float | None = None

    @classmethod
    def from_json(cls, data: JSON) -> MetricTag:
        return cls(tag=str(data["tag"]), count=int(data.get("count", 0)),
                   last_step=opt_int(data.get("last_step")),
                   last_value=parse_number(data.get("last_value")))


@dataclass(frozen=True)
class SeriesPoint:
    """One bucket of a downsampled series."""

    step: int
    min: float | None
    max: float | None
    last: float | None
    count: int

    @classmethod
    def from_json(cls, data: JSON) -> SeriesPoint:
        return cls(step=int(data["step"]), min=parse_number(data.get("min")),
                   max=parse_number(data.get("max")), last=parse_number(data.get("last")),
                   count=int(data.get("count", 1)))


@dataclass(frozen=True)
class Series:
    tag: str
    points: tuple[SeriesPoint, ...]
    total: int

    @classmethod
    def from_json(cls, data: JSON) -> Series:
        return cls(tag=str(data.get("tag", "")),
                   points=tuple(SeriesPoint.from_json(p) for p in data.get("points") or ()),
                   total=int(data.get("total", 0)))


@dataclass(frozen=True)
class Checkpoint:
    step: int
    status: str
    attempt: int | None = None
    name: str | None = None
    sha256: str | None = None
    size: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: JSON) -> Checkpoint:
        return cls(step=int(data["step"]), status=str(data.get("status", "")),
                   attempt=opt_int(data.get("attempt")), name=data.get("name"),
                   sha256=data.get("sha256"), size=opt_int(data.get("size")),
                   metrics=dict(data.get("metrics") or {}),
                   created_at=parse_time(data.get("created_at"), "checkpoint.created_at"),
                   raw=dict(data))


@dataclass(frozen=True)
class Artifact:
    name: str
    sha256: str
    size: int
    kind: str | None = None
    attempt: int | None = None
    created_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: JSON) -> Artifact:
        return cls(name=str(data["name"]), sha256=str(data["sha256"]), size=int(data["size"]),
                   kind=data.get("kind"), attempt=opt_int(data.get("attempt")),
                   created_at=parse_time(data.get("created_at"), "artifact.created_at"),
                   raw=dict(data))


@dataclass(frozen=True)
class LogChunk:
    """A slice of a run's captured output; pass ``next_offset`` back to read on."""

    data: str
    next_offset: int
    attempt: int | None = None
    #: Where ``data`` starts (with ``tail``: where the last lines begin).
    offset: int | None = None

    @classmethod
    def from_json(cls, data: JSON) -> LogChunk:
        return cls(data=str(data.get("data", "")), next_offset=int(data.get("next_offset", 0)),
                   attempt=opt_int(data.get("attempt")), offset=opt_int(data.get("offset")))


@dataclass(frozen=True)
class Worker:
    host_id: str
    hostname: str | None = None
    capabilities: dict[str, Any] = field(default_factory=dict)
    drained: bool = False
    slots: int | None = None
    last_seen_at: datetime | None = None
    registered_at: datetime | None = None
    alive: bool | None = None
    active_attempts: int = 0
    #: The token that registered it (or last claimed as it).
    token_name: str | None = None
    #: The kind of agent: ``local`` or ``slurm`` (docs/executors.md).
    executor: str = "local"
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: JSON) -> Worker:
        return cls(host_id=str(data["host_id"]), hostname=data.get("hostname"),
                   capabilities=dict(data.get("capabilities") or {}),
                   drained=bool(data.get("drained", False)), slots=opt_int(data.get("slots")),
                   last_seen_at=parse_time(data.get("last_seen_at"), "worker.last_seen_at"),
                   registered_at=parse_time(data.get("registered_at"), "worker.registered_at"),
                   alive=data.get("alive"),
                   active_attempts=int(data.get("active_attempts") or 0),
                   token_name=data.get("token_name"),
                   executor=str(data.get("executor") or "local"),
                   raw=dict(data))
