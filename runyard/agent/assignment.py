"""What an attempt is given: the checked claim answer, the agent's settings, its files.

:class:`Assignment` is the server's claim answer (docs/http-api.md,
``POST /v1/workers/claim``), checked once so the rest of the agent can trust it;
:class:`AttemptPaths` names the files of one attempt under ``<work-dir>/<run_id>/<attempt>/``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runyard import errors, models, timestamps
from runyard.agent.isolation import TrainUser

#: Bounds of the heartbeat interval, min(stale_after / 4, 5 s).
HEARTBEAT_MIN_S, HEARTBEAT_MAX_S = 0.1, 5.0


def parse_time(value: Any, field: str) -> float:
    """A time from the server (ISO 8601 or UNIX seconds) as UNIX seconds; required."""
    seconds = timestamps.parse_time(value, field)
    if seconds is None:
        raise errors.ValidationError(f"{field}: expected an ISO 8601 time, got {value!r}",
                                     field=field)
    return seconds


@dataclass(frozen=True)
class Assignment:
    """A claim answer (docs/http-api.md, ``POST /v1/workers/claim``), checked."""

    run: dict[str, Any]
    attempt_id: str
    number: int
    lease: str
    lease_expires_at: float
    command: list[str]
    env: dict[str, str]
    config: dict[str, Any]
    probe_interval_s: float | None
    seed: Any
    claimed_at: float = field(default_factory=time.time)
    #: The attempt's own credential (docs/security.md): what an executor hands to a
    #: supervisor that runs elsewhere (``runyard supervise``) instead of the worker token.
    attempt_token: str | None = field(default=None, repr=False)
    #: The claim's answer as it came, without the credential: the spec ``runyard
    #: supervise --spec`` reads (see :meth:`spec`).
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def spec(self, launch_prefix: Sequence[str] = ()) -> dict[str, Any]:
        """The JSON of a ``runyard supervise --spec`` file for this attempt (never holding
        the credential: that goes in its own 0600 file or ``RUNYARD_ATTEMPT_TOKEN``)."""
        out = dict(self.raw)
        if launch_prefix:
            out["launch_prefix"] = list(launch_prefix)
        return out

    @property
    def run_id(self) -> str:
        return str(self.run["id"])

    @property
    def constraints(self) -> models.Constraints:
        try:
            return models.Constraints.from_dict(self.run.get("constraints") or {})
        except errors.ValidationError:
            return models.Constraints()

    @property
    def stale_after_s(self) -> float:
        """The lease length, as the claim answer implies it."""
        return max(self.lease_expires_at - self.claimed_at, 0.0)

    @classmethod
    def from_claim(cls, body: Mapping[str, Any]) -> Assignment:
        run, attempt = body.get("run"), body.get("attempt")
        if not isinstance(run, Mapping) or not isinstance(run.get("id"), str):
            raise errors.ValidationError("claim.run: expected an object with an id",
                                         field="claim.run")
        if not isinstance(attempt, Mapping) or not isinstance(attempt.get("id"), str):
            raise errors.ValidationError("claim.attempt: expected {id, number}",
                                         field="claim.attempt")
        lease = body.get("lease")
        if not isinstance(lease, str) or not lease:
            raise errors.ValidationError("claim.lease: missing", field="claim.lease")
        command = body.get("command") or run.get("command")
        if not isinstance(command, list):
            command = []  # refused as a setup error, with the run reported, not dropped
        env = body.get("env") or {}
        probe = body.get("probe_interval_s", run.get("probe_interval_s"))
        token = body.get("attempt_token")
        return cls(
            run=dict(run), attempt_id=attempt["id"], number=int(attempt.get("number") or 1),
            lease=lease,
            lease_expires_at=parse_time(body.get("lease_expires_at"), "claim.lease_expires_at"),
            command=list(command),
            env={str(k): str(v) for k, v in env.items()} if isinstance(env, Mapping) else {},
            config=dict(body.get("config") or run.get("config") or {}),
            probe_interval_s=float(probe) if isinstance(probe, int | float) and probe > 0
            else None,
            seed=body.get("seed", run.get("seed")),
            attempt_token=token if isinstance(token, str) and token else None,
            raw={k: v for k, v in body.items() if k != "attempt_token"},
        )


@dataclass(frozen=True)
class AttemptSettings:
    """What the agent gives every attempt."""

    host_id: str
    work_dir: Path
    probe_interval_s: float = 1.0
    stop_grace_s: float = 30.0
    #: Where commands run (a run's relative ``workdir`` is taken from here): the directory
    #: the agent was started in, its checkout, so ``examples/fleet/train_gbt.py`` in a
    #: manifest means the same file to the operator and to the run. None: ``work_dir``.
    run_cwd: Path | None = None
    #: Start runs as this OS user (``--train-as``); None: as the agent's own.
    train_user: TrainUser | None = None
    #: Seconds between system metric samples (``--sys-interval-s``); 0: none.
    sys_interval_s: float = 10.0
    #: An argv put before the run's command: a launcher (``srun ...``) that starts it on
    #: every node of an allocation (docs/executors.md).
    launch_prefix: tuple[str, ...] = ()
    #: Whether a stop of the supervisor itself (an agent's exit, SIGTERM) is reported as
    #: ``worker_shutdown``; False leaves the attempt for its executor to report.
    report_on_shutdown: bool = True
    #: When a stop signal reached the supervisor (monotonic; None: none), read when the exit
    #: is judged: the signal handler's own time, not when the supervisor got round to it.
    signalled_at: Callable[[], float | None] | None = None


@dataclass(frozen=True)
class AttemptPaths:
    """The files of one attempt under ``<work-dir>/<run_id>/<attempt>/``."""

    root: Path

    progress_file = property(lambda self: self.root / "progress.json")
    metrics_file = property(lambda self: self.root / "metrics.jsonl")
    checkpoints_file = property(lambda self: self.root / "checkpoints.jsonl")
    checkpoint_dir = property(lambda self: self.root / "checkpoints")
    artifact_dir = property(lambda self: self.root / "artifacts")
    config_file = property(lambda self: self.root / "config.json")
    stop_file = property(lambda self: self.root / "STOP")
    checkpoint_request_file = property(lambda self: self.root / "CHECKPOINT")
    #: Kubeflow Trainer's forms (runyard.agent.trainer_status).
    progression_file = property(lambda self: self.root / "training_progression.json")
    trainer_token_file = property(lambda self: self.root / "trainer-status-token")
    log_dir = property(lambda self: self.root / "logs")


def heartbeat_interval(stale_after_s: float) -> float:
    """min(stale_after / 4, 5 s), kept within sane bounds."""
    if stale_after_s <= 0:
        return HEARTBEAT_MAX_S
    return min(max(stale_after_s / 4.0, HEARTBEAT_MIN_S), HEARTBEAT_MAX_S)


def sha256_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
