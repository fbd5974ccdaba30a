"""Plain data shared by every part: statuses, reasons, constraints, capabilities.

Frozen dataclasses only; nothing here imports the server stack, so the SDK can use it. Each
concept has a module of its own, and this one names them all, so ``from runyard.models import
X`` and ``models.X`` work for every one: run statuses and reasons in :mod:`runyard.statuses`,
checks of user-sent fields in :mod:`runyard.fields`, hosts and what runs need of them in
:mod:`runyard.resources`; here the small value objects of leases, tokens and the queue's answers.
"""

from __future__ import annotations

import enum
import hmac
from dataclasses import dataclass, field
from typing import Any

from runyard import defaults
from runyard.fields import (
    INT32_MAX,
    INT32_MIN,
    INT64_MAX,
    INT64_MIN,
    LOCAL_HOST_PREFIX,
    MAX_TAGS,
    local_host,
    validate_glob,
    validate_host_id,
    validate_name,
    validate_tags,
)
from runyard.resources import (
    GPU,
    Capabilities,
    Constraints,
    HostPolicy,
    run_executor_served,
    worker_kind_for,
)
from runyard.statuses import (
    ACTIVE,
    SYSTEM_REASONS,
    TERMINAL,
    TRANSITIONS,
    Reason,
    Status,
    check_transition,
)

__all__ = [
    "ACTIVE", "ATTEMPT_TOKEN_PREFIX", "GPU", "INT32_MAX", "INT32_MIN", "INT64_MAX", "INT64_MIN",
    "LOCAL_HOST_PREFIX", "MAX_TAGS", "SYSTEM_REASONS", "TERMINAL", "TRANSITIONS", "Capabilities",
    "Constraints", "HostPolicy", "Reason", "Role", "Status", "StopOrder", "SweepResult",
    "check_transition", "leases_match", "local_host", "normalise_defaults", "run_executor_served",
    "validate_glob", "validate_host_id", "validate_name", "validate_tags", "worker_kind_for",
]


def leases_match(stored: str, given: object) -> bool:
    """Constant-time lease comparison; any text compares (as UTF-8), not only ASCII."""
    if not isinstance(given, str):
        return False
    return hmac.compare_digest(stored.encode("utf-8", "surrogatepass"),
                               given.encode("utf-8", "surrogatepass"))


#: An attempt's own credential starts with this (tokens with ``ry_``), so the server tells
#: them apart at a glance (docs/security.md).
ATTEMPT_TOKEN_PREFIX = "rya_"


class Role(enum.StrEnum):
    """Token roles; viewer < user < operator, and worker beside them."""

    VIEWER = "viewer"
    USER = "user"
    OPERATOR = "operator"
    WORKER = "worker"
    #: An attempt's own credential (docs/security.md): its leased calls only, never a token.
    ATTEMPT = "attempt"


def normalise_defaults() -> dict[str, Any]:
    """Default retry and supervision policy of a run, as stored. No probe interval: a run
    that names none is probed at its agent's (``runyard agent --probe-interval-s``)."""
    return {
        "priority": 0,
        "max_attempts": defaults.MAX_ATTEMPTS,
        "max_restarts_on_errors": defaults.MAX_RESTARTS_ON_ERRORS,
        "retry_on_exit_codes": [],
        "stall_after_s": defaults.STALL_AFTER_S,
    }


@dataclass(frozen=True)
class StopOrder:
    """The server's answer to a heartbeat: keep going, or stop within ``grace_s``; and the
    time of a pending checkpoint request (None: none), which names the request."""

    lease_expires_at: float
    stop: bool = False
    intent: str | None = None
    grace_s: float | None = None
    checkpoint_requested_at: float | None = None

    @property
    def checkpoint(self) -> bool:
        """Whether the training loop is asked to save a checkpoint."""
        return self.checkpoint_requested_at is not None


@dataclass
class SweepResult:
    """What one sweep did: runs whose attempt was lost, those of them requeued, and runs
    newly marked stalled."""

    lost: list[str] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)
    stalled: list[str] = field(default_factory=list)
