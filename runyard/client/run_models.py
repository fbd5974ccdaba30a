"""A run as the server reports it (docs/http-api.md): :class:`Run`, its attempts
(:class:`Attempt`) and its latest :class:`Progress`, with the verbs of a run bound to whoever
fetched it (:class:`RunActions`, a ``Client``).

Every model keeps the JSON it was parsed from in ``raw``; a field the server left out
(``fields=`` selection) is ``None``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from runyard import errors, models
from runyard.client.decoding import JSON, nodes_of, opt_int, parse_number, parse_time


class RunActions(Protocol):
    """What a bound :class:`Run`'s verbs need from whoever fetched it (a ``Client``)."""

    def get_run(self, run: str) -> Run: ...

    def stop(self, run: Run, grace: float = ...) -> Run: ...

    def restart(self, run: Run, resources: Mapping[str, Any] | models.Constraints | None = ...
                ) -> Run: ...

    def cancel(self, run: Run) -> Run: ...

    def request_checkpoint(self, run: Run) -> Run: ...

    def requeue(self, run: Run) -> Run: ...

    def delete(self, run: Run) -> None: ...

    def edit(self, run: Run, *, name: str | None = ..., notes: str | None = ...,
             tags: Sequence[str] | None = ...) -> Run: ...

    def wait(self, run: Run, until: Sequence[str] | None = ..., timeout: float | None = ...,
             on_update: Callable[[Run], None] | None = ..., poll_s: float = ...) -> Run: ...


@dataclass(frozen=True)
class Progress:
    """A run's latest progress snapshot (protocol v1) with the server's ETA and stall flag."""

    step: int | None = None
    total_steps: int | None = None
    epoch: float | None = None
    total_epochs: float | None = None
    percent: float | None = None
    phase: str | None = None
    message: str | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)
    rate: dict[str, Any] | None = None
    seq: int | None = None
    eta_seconds: float | None = None
    stalled: bool = False
    updated_at: datetime | None = None
    progress_updated_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: JSON) -> Progress:
        """Accepts both the run's ``progress`` object and ``GET .../progress``'s answer."""
        snap: JSON = (data.get("snapshot") or {}) if "snapshot" in data else data
        return cls(
            step=opt_int(snap.get("step")),
            total_steps=opt_int(snap.get("total_steps")),
            epoch=parse_number(snap.get("epoch")),
            total_epochs=parse_number(snap.get("total_epochs")),
            percent=parse_number(snap.get("percent")),
            phase=snap.get("phase"),
            message=snap.get("message"),
            metrics={str(k): parse_number(v) for k, v in (snap.get("metrics") or {}).items()},
            rate=snap.get("rate"),
            seq=opt_int(snap.get("seq")),
            eta_seconds=parse_number(data.get("eta_seconds", snap.get("eta_seconds"))),
            stalled=bool(data.get("stalled", False)),
            updated_at=parse_time(snap.get("updated_at"), "progress.updated_at"),
            progress_updated_at=parse_time(data.get("progress_updated_at"),
                                           "progress_updated_at"),
            raw=dict(data),
        )

    @property
    def fraction(self) -> float | None:
        """Done fraction in [0, 1]: ``percent`` if sent, else step / total_steps."""
        if self.percent is not None and math.isfinite(self.percent):
            return min(max(self.percent / 100.0, 0.0), 1.0)
        if self.step is not None and self.total_steps:
            return min(max(self.step / self.total_steps, 0.0), 1.0)
        return None

    @property
    def has_snapshot(self) -> bool:
        return bool(self.raw.get("snapshot")) if "snapshot" in self.raw else bool(self.raw)


@dataclass(frozen=True)
class Attempt:
    """One try to execute a run."""

    id: str
    number: int
    host_id: str | None = None
    active: bool = False
    claimed_at: datetime | None = None
    running_at: datetime | None = None
    ended_at: datetime | None = None
    termination_reason: str | None = None
    exit_code: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    #: Where its executor placed it: a Slurm job id, and the nodes.
    external_id: str | None = None
    nodes: tuple[str, ...] | None = None
    #: The directory its process ran in, as its holder reported it.
    workdir: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: JSON) -> Attempt:
        return cls(
            id=str(data.get("id", "")),
            number=int(data.get("number", 0)),
            host_id=data.get("host_id"),
            active=bool(data.get("active", False)),
            claimed_at=parse_time(data.get("claimed_at"), "attempt.claimed_at"),
            running_at=parse_time(data.get("running_at"), "attempt.running_at"),
            ended_at=parse_time(data.get("ended_at"), "attempt.ended_at"),
            termination_reason=data.get("termination_reason"),
            exit_code=opt_int(data.get("exit_code")),
            details=dict(data.get("details") or {}),
            external_id=data.get("external_id"),
            nodes=nodes_of(data.get("nodes")),
            workdir=data.get("workdir"),
            raw=dict(data),
        )


#: Run fields :meth:`Run.reload` may refresh selectively.
RELOADABLE = ("status", "attempt", "host_id", "started_at", "ended_at", "termination_reason",
              "exit_code", "progress", "progress_updated_at", "notes", "attempts", "explain",
              "updated_at", "status_updated_at", "name", "tags", "checkpoint_requested_at",
              "artifact_store", "archived")


@dataclass(frozen=True)
class Run:
    """A run as the server reports it, bound to the ``Client`` that fetched it."""

    id: str
    name: str | None = None
    project: str | None = None
    version: str | None = None
    notes: str | None = None
    tags: tuple[str, ...] = ()
    status: str | None = None
    status_updated_at: datetime | None = None
    owner: str | None = None
    attempt: int | None = None
    host_id: str | None = None
    executor: str | None = None
    blueprint: str | None = None
    command: tuple[str, ...] | None = None
    config: dict[str, Any] | None = None
    seed: int | None = None
    constraints: dict[str, Any] | None = None
    priority: int | None = None
    max_attempts: int | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    updated_at: datetime | None = None
    termination_reason: str | None = None
    exit_code: int | None = None
    progress: Progress | None = None
    progress_updated_at: datetime | None = None
    #: When a checkpoint was asked of the training loop; None when none is pending.
    checkpoint_requested_at: datetime | None = None
    attempts: tuple[Attempt, ...] | None = None
    explain: dict[str, Any] | None = None
    #: Where its artifact files are (a local run's directory, or the server's store), and
    #: whether its artifact directory is archived in the server's store.
    artifact_store: str | None = None
    archived: bool = False
    #: The work directory it asked for; where each attempt ran is ``attempts[i].workdir``.
    workdir: str | None = None
    #: Slurm runs (docs/executors.md): the launcher, the options, and where the latest
    #: attempt runs (the Slurm job id and its nodes).
    launcher: str | None = None
    slurm: dict[str, Any] | None = None
    external_id: str | None = None
    nodes: tuple[str, ...] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    client: RunActions | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: JSON, client: RunActions | None = None) -> Run:
        command = data.get("command")
        attempts = data.get("attempts")
        progress = data.get("progress")
        return cls(
            id=str(data["id"]),
            name=data.get("name"),
            project=data.get("project"),
            version=data.get("version"),
            notes=data.get("notes"),
            tags=tuple(str(t) for t in data.get("tags") or ()),
            status=data.get("status"),
            status_updated_at=parse_time(data.get("status_updated_at"), "status_updated_at"),
            owner=data.get("owner"),
            attempt=opt_int(data.get("attempt")),
            host_id=data.get("host_id"),
            executor=data.get("executor"),
            blueprint=data.get("blueprint"),
            command=None if command is None else tuple(str(a) for a in command),
            config=data.get("config"),
            seed=opt_int(data.get("seed")),
            constraints=data.get("constraints"),
            priority=opt_int(data.get("priority")),
            max_attempts=opt_int(data.get("max_attempts")),
            created_at=parse_time(data.get("created_at"), "created_at"),
            started_at=parse_time(data.get("started_at"), "started_at"),
            ended_at=parse_time(data.get("ended_at"), "ended_at"),
            updated_at=parse_time(data.get("updated_at"), "updated_at"),
            termination_reason=data.get("termination_reason"),
            exit_code=opt_int(data.get("exit_code")),
            progress=None if progress is None else Progress.from_json(
                {"progress_updated_at": data.get("progress_updated_at"), **progress}),
            progress_updated_at=parse_time(data.get("progress_updated_at"),
                                           "progress_updated_at"),
            checkpoint_requested_at=parse_time(data.get("checkpoint_requested_at"),
                                               "checkpoint_requested_at"),
            attempts=None if attempts is None else tuple(Attempt.from_json(a) for a in attempts),
            explain=data.get("explain"),
            artifact_store=data.get("artifact_store"),
            archived=bool(data.get("archived")),
            workdir=data.get("workdir"),
            launcher=data.get("launcher"),
            slurm=data.get("slurm"),
            external_id=data.get("external_id"),
            nodes=nodes_of(data.get("nodes")),
            raw=dict(data),
            client=client,
        )

    # ------------------------------------------------------------------ state
    @property
    def is_terminal(self) -> bool:
        return self.status in {s.value for s in models.TERMINAL}

    def _bound(self) -> RunActions:
        if self.client is None:
            raise errors.ConfigError(f"run {self.id} is not bound to a client")
        return self.client

    # ------------------------------------------------------------------ verbs
    def reload(self, fields: Sequence[str] | None = None) -> Run:
        """A fresh copy from the server; with ``fields``, only those are refreshed."""
        fresh = self._bound().get_run(self.id)
        if fields is None:
            return fresh
        unknown = sorted(set(fields) - set(RELOADABLE))
        if unknown:
            raise errors.ValidationError(
                f"fields: cannot reload {unknown[0]!r} (reloadable: {', '.join(RELOADABLE)})",
                field="fields")
        changes = {name: getattr(fresh, name) for name in fields}
        raw = {**self.raw, **{name: fresh.raw.get(name) for name in fields}}
        return dataclasses.replace(self, raw=raw, **changes)

    def stop(self, grace: float = 30.0) -> Run:
        return self._bound().stop(self, grace=grace)

    def restart(self, resources: Mapping[str, Any] | models.Constraints | None = None) -> Run:
        return self._bound().restart(self, resources=resources)

    def cancel(self) -> Run:
        return self._bound().cancel(self)

    def request_checkpoint(self) -> Run:
        """Ask the training loop to save a checkpoint (see ``Client.request_checkpoint``)."""
        return self._bound().request_checkpoint(self)
    def edit(self, *, name: str | None = None, notes: str | None = None,
             tags: Sequence[str] | None = None) -> Run:
        """Change the run's name, notes or tags (those given); returns the edited run."""
        return self._bound().edit(self, name=name, notes=notes, tags=tags)

    def requeue(self) -> Run:
        return self._bound().requeue(self)

    def delete(self) -> None:
        self._bound().delete(self)

    def wait(self, until: Sequence[str] | None = None, timeout: float | None = None,
             on_update: Callable[[Run], None] | None = None, poll_s: float = 1.0) -> Run:
        return self._bound().wait(self, until=until, timeout=timeout, on_update=on_update,
                                  poll_s=poll_s)


