"""Run statuses, the legal changes between them, and why an attempt ended
(docs/lifecycle.md).

Plain enums with no dependency beyond :mod:`runyard.errors`, so every part can use them;
``from runyard.models import Status`` still works.
"""

from __future__ import annotations

import enum

from runyard import errors


class Status(enum.StrEnum):
    """Run status (docs/lifecycle.md)."""

    QUEUED = "queued"
    CLAIMED = "claimed"
    RUNNING = "running"
    STOPPING = "stopping"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL

    @property
    def is_active(self) -> bool:
        return self in ACTIVE

    @classmethod
    def parse(cls, value: str, field: str = "status") -> Status:
        try:
            return cls(value)
        except ValueError:
            allowed = ", ".join(s.value for s in cls)
            raise errors.ValidationError(
                f"{field}: unknown status {value!r} (expected one of: {allowed})", field=field
            ) from None


TERMINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.STOPPED, Status.CANCELLED})
ACTIVE = frozenset({Status.CLAIMED, Status.RUNNING, Status.STOPPING})

#: Every legal status change. Anything else is refused with both states named.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.QUEUED: frozenset({Status.CLAIMED, Status.CANCELLED}),
    Status.CLAIMED: frozenset(
        {Status.RUNNING, Status.STOPPING, Status.QUEUED, Status.COMPLETED, Status.FAILED,
         Status.STOPPED, Status.CANCELLED}
    ),
    Status.RUNNING: frozenset(
        {Status.STOPPING, Status.QUEUED, Status.COMPLETED, Status.FAILED, Status.STOPPED}
    ),
    Status.STOPPING: frozenset({Status.QUEUED, Status.COMPLETED, Status.FAILED, Status.STOPPED}),
    Status.COMPLETED: frozenset(),
    Status.FAILED: frozenset({Status.QUEUED}),
    Status.STOPPED: frozenset({Status.QUEUED}),
    Status.CANCELLED: frozenset({Status.QUEUED}),
}


def check_transition(current: Status, target: Status, run_id: str | None = None) -> None:
    """Raise :class:`errors.IllegalTransition` unless ``current -> target`` is legal."""
    if target not in TRANSITIONS[current]:
        raise errors.IllegalTransition(current.value, target.value, run_id=run_id)


class Reason(enum.StrEnum):
    """Why an attempt ended."""

    COMPLETED = "completed"
    USER_ERROR = "user_error"
    SETUP_ERROR = "setup_error"
    LOST = "lost"
    WORKER_SHUTDOWN = "worker_shutdown"
    STOPPED = "stopped"
    PREEMPTED = "preempted"
    RULE = "rule"
    #: The batch scheduler ended the job at its time limit (Slurm ``TIMEOUT``).
    TIMEOUT = "timeout"
    #: The batch scheduler ended the job for using more memory than it asked (``OUT_OF_MEMORY``).
    OOM = "oom"

    @classmethod
    def parse(cls, value: str, field: str = "reason") -> Reason:
        try:
            return cls(value)
        except ValueError:
            allowed = ", ".join(r.value for r in cls)
            raise errors.ValidationError(
                f"{field}: unknown termination reason {value!r} (expected one of: {allowed})",
                field=field,
            ) from None


#: Reasons that requeue on their own, bounded by ``max_attempts``.
SYSTEM_REASONS = frozenset({Reason.LOST, Reason.WORKER_SHUTDOWN, Reason.PREEMPTED})
