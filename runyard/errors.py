"""Every exception Runyard raises, under one base class.

    RunyardError
    ├── ConfigError              bad option, env var or data directory
    ├── ValidationError          bad input: names the field (and file/line when known)
    │   └── ManifestError        a manifest with one or more problems, all listed
    ├── NotFound                 a run, attempt, worker, token, blob... that does not exist
    ├── Conflict                 the request is valid but the current state refuses it
    │   ├── IllegalTransition    a status change the lifecycle forbids (names both states)
    │   ├── LeaseConflict        fencing: a stale or foreign lease
    │   └── NotSchedulable       no agent can run it (a local run): it cannot be queued
    ├── AuthError                missing or bad credentials
    │   └── Forbidden            authenticated but not allowed
    ├── StoreError               the database failed (driver error kept as __cause__)
    ├── RequestTooLarge          a request body over its endpoint's limit
    ├── TooManyRequests          over a cap on concurrent use (event streams)
    ├── SchedulerError           a batch scheduler's command failed (Slurm's message kept)
    ├── ArtifactError            a blob failed verification or limits
    │   ├── ChecksumMismatch
    │   └── TooLarge
    └── TransportError           the client could not reach the server
        └── ServerError          the server answered 5xx

The first line of each docstring is the default message.
"""

from __future__ import annotations

from typing import Any


class RunyardError(Exception):
    """Runyard failed."""

    #: HTTP status the server answers with for this error.
    http_status: int = 500

    def __init__(self, message: str | None = None, **details: Any) -> None:
        doc = (type(self).__doc__ or "").strip().splitlines()
        self.message = message or (doc[0] if doc else type(self).__name__)
        self.details = details
        super().__init__(self.message)


class ConfigError(RunyardError):
    """The configuration is invalid."""

    http_status = 400


class ValidationError(RunyardError):
    """The input is invalid."""

    http_status = 422

    def __init__(
        self,
        message: str | None = None,
        *,
        field: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        **details: Any,
    ) -> None:
        if message is None and field is not None:
            message = f"{field}: invalid value"
        super().__init__(message, **details)
        self.field = field
        self.errors = errors or (
            [{"field": field, "message": self.message}] if field else [{"message": self.message}]
        )


class ManifestError(ValidationError):
    """The manifest is invalid."""


class NotFound(RunyardError):
    """Not found."""

    http_status = 404


class Conflict(RunyardError):
    """The current state refuses this request."""

    http_status = 409


class IllegalTransition(Conflict):
    """This status change is not allowed."""

    def __init__(self, current: str, target: str, *, run_id: str | None = None) -> None:
        who = f"run {run_id}" if run_id else "run"
        super().__init__(
            f"cannot move {who} from {current!r} to {target!r}",
            current=current,
            target=target,
        )
        self.current = current
        self.target = target


class LeaseConflict(Conflict):
    """The lease is stale or belongs to another worker."""


class NotSchedulable(Conflict):
    """No agent can run this run, so it cannot be queued."""


class AuthError(RunyardError):
    """Authentication required."""

    http_status = 401


class Forbidden(AuthError):
    """Not allowed."""

    http_status = 403

    def __init__(self, message: str | None = None, *, field: str | None = None,
                 **details: Any) -> None:
        super().__init__(message, **details)
        #: The request field the caller may not set, when one is to blame.
        self.field = field


class StoreError(RunyardError):
    """The database failed."""

    http_status = 503


class RequestTooLarge(RunyardError):
    """The request body exceeds this endpoint's size limit."""

    http_status = 413


class TooManyRequests(RunyardError):
    """Too many concurrent requests of this kind; retry later."""

    http_status = 429


class SchedulerError(RunyardError):
    """The batch scheduler refused or failed the request."""

    http_status = 502

    def __init__(self, message: str | None = None, *, command: str = "",
                 returncode: int | None = None, **details: Any) -> None:
        super().__init__(message, **details)
        self.command = command
        self.returncode = returncode


class ArtifactError(RunyardError):
    """The artifact was refused."""

    http_status = 400


class ChecksumMismatch(ArtifactError):
    """The content does not match its declared sha256."""


class TooLarge(ArtifactError):
    """The upload exceeds the size limit."""

    http_status = 413


class TransportError(RunyardError):
    """The server could not be reached."""

    http_status = 503


class ServerError(TransportError):
    """The server failed."""
