"""Plain data shared by every part: statuses, reasons, constraints, capabilities.

Frozen dataclasses only; nothing here imports the server stack, so the SDK can use it.
"""

from __future__ import annotations

import enum
import fnmatch
import hmac
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from runyard import defaults, errors

#: The integers the store's columns hold: 64 bits for steps, sizes and offsets, 32 bits
#: (PostgreSQL's ``integer``) for counts, priorities, exit codes and attempt numbers. Larger
#: ones are refused at the edge, naming their field, instead of overflowing a driver.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


def leases_match(stored: str, given: object) -> bool:
    """Constant-time lease comparison; any text compares (as UTF-8), not only ASCII."""
    if not isinstance(given, str):
        return False
    return hmac.compare_digest(stored.encode("utf-8", "surrogatepass"),
                               given.encode("utf-8", "surrogatepass"))


#: An attempt's own credential starts with this (tokens with ``ry_``), so the server tells
#: them apart at a glance (docs/security.md).
ATTEMPT_TOKEN_PREFIX = "rya_"


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


class Role(enum.StrEnum):
    """Token roles; viewer < user < operator, and worker beside them."""

    VIEWER = "viewer"
    USER = "user"
    OPERATOR = "operator"
    WORKER = "worker"
    #: An attempt's own credential (docs/security.md): its leased calls only, never a token.
    ATTEMPT = "attempt"


# --------------------------------------------------------------------------- validation helpers

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+@/-]{0,199}$")
#: A host id: a name without ``+@/``, so it is safe in a URL path and never looks like a
#: local run's host (:func:`local_host`).
_HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$")
#: What a run started by hand records before its machine's host id.
LOCAL_HOST_PREFIX = "local/"


def validate_host_id(value: Any, field: str) -> str:
    """A worker's or a local run's host id (docs/scheduling.md)."""
    if not isinstance(value, str) or not _HOST_RE.match(value):
        raise errors.ValidationError(
            f"{field}: expected a host id of 1-200 letters, digits and ._:- (not starting "
            f"with punctuation), got {value!r}", field=field)
    return value


def local_host(host_id: str) -> str:
    """The host a run started by hand on ``host_id`` records. Local runs live in a namespace of
    their own: the ``/`` no worker's host id holds keeps them out of every worker's count of
    active attempts, so they never take a worker's slots (docs/sdk.md)."""
    return LOCAL_HOST_PREFIX + validate_host_id(host_id, "host_id")


#: An executor's name (``local``, ``slurm``; docs/executors.md).
_EXECUTOR_RE = re.compile(r"^[a-z][a-z0-9_-]{0,19}$")

#: The run executor each kind of worker serves: a local agent takes the fleet's runs
#: (``agent``); any other kind takes runs named after it. ``local`` runs (started by hand)
#: are never queued, so no worker takes them.
_RUN_EXECUTOR_OF_WORKER = {"local": "agent"}


def run_executor_served(worker_executor: str) -> str:
    """The ``executor`` of the runs a worker of this kind claims."""
    return _RUN_EXECUTOR_OF_WORKER.get(worker_executor, worker_executor)


def worker_kind_for(run_executor: str) -> str:
    """The kind of worker (``runyard agent --executor``) that serves runs of this executor."""
    return "local" if run_executor == "agent" else run_executor


def _number(data: Mapping[str, Any], key: str, prefix: str, default: float, *,
            integer: bool = False) -> Any:
    value = data.get(key, default)
    path = f"{prefix}{key}"
    if isinstance(value, bool) or not isinstance(value, int | float) or (
        isinstance(value, float) and not math.isfinite(value)
    ):
        raise errors.ValidationError(f"{path}: expected a number, got {value!r}", field=path)
    if integer and not float(value).is_integer():
        raise errors.ValidationError(f"{path}: expected an integer, got {value!r}", field=path)
    if value < 0:
        raise errors.ValidationError(f"{path}: must not be negative, got {value!r}", field=path)
    if integer and value > INT32_MAX:
        raise errors.ValidationError(f"{path}: must be below 2**31, got {value!r}", field=path)
    return int(value) if integer else float(value)


def _bool(data: Mapping[str, Any], key: str, prefix: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise errors.ValidationError(
            f"{prefix}{key}: expected true or false, got {value!r}", field=f"{prefix}{key}"
        )
    return value


def validate_glob(pattern: Any, field: str) -> str:
    """Check a host-policy or allowed-hosts glob; malformed ones are refused, not ignored."""
    if not isinstance(pattern, str) or not pattern or len(pattern) > 200:
        raise errors.ValidationError(
            f"{field}: expected a non-empty glob string, got {pattern!r}", field=field
        )
    if any(ch in pattern for ch in "\x00\n\r"):
        raise errors.ValidationError(f"{field}: control character in glob {pattern!r}", field=field)
    depth = 0
    for ch in pattern:
        if ch == "[":
            depth += 1
        elif ch == "]" and depth:
            depth -= 1
    if depth:
        raise errors.ValidationError(
            f"{field}: malformed glob {pattern!r} (unclosed '[')", field=field
        )
    return pattern


def _globs(data: Mapping[str, Any], key: str, prefix: str) -> tuple[str, ...]:
    value = data.get(key, [])
    path = f"{prefix}{key}"
    if not isinstance(value, list | tuple):
        raise errors.ValidationError(f"{path}: expected a list of globs", field=path)
    return tuple(validate_glob(p, f"{path}[{i}]") for i, p in enumerate(value))


def _labels(data: Mapping[str, Any], key: str, prefix: str) -> dict[str, str]:
    value = data.get(key, {})
    path = f"{prefix}{key}"
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str | int | float | bool) for k, v in value.items()
    ):
        raise errors.ValidationError(f"{path}: expected a table of key = value", field=path)
    return {k: str(v) for k, v in value.items()}


def _reject_unknown(data: Mapping[str, Any], known: Iterable[str], prefix: str) -> None:
    extra = sorted(set(data) - set(known))
    if extra:
        raise errors.ValidationError(
            f"{prefix}{extra[0]}: unknown key", field=f"{prefix}{extra[0]}"
        )


# --------------------------------------------------------------------------- constraints


@dataclass(frozen=True)
class Constraints:
    """What a run needs from a host (docs/scheduling.md)."""

    require_cuda: bool = False
    prefer_cuda: bool = False
    gpus: int = 0
    min_vram_gib: float = 0.0
    min_ram_gib: float = 0.0
    min_cpus: float = 0.0
    allowed_hosts: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    #: Nodes the run spans (docs/executors.md); only a Slurm agent offers more than one.
    nodes: int = 1
    #: The explicit spelling of ``gpus`` for multi-node runs: GPUs on each node (``gpus`` is
    #: always per host, so a run's total is ``nodes * gpus``). None when not given.
    gpus_per_node: int | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, prefix: str = "constraints.") -> Constraints:
        data = data or {}
        if not isinstance(data, Mapping):
            raise errors.ValidationError(f"{prefix.rstrip('.')}: expected an object",
                                         field=prefix.rstrip("."))
        _reject_unknown(data, cls.__dataclass_fields__, prefix)
        nodes = _number(data, "nodes", prefix, 1, integer=True)
        if nodes < 1:
            raise errors.ValidationError(f"{prefix}nodes: must be at least 1, got {nodes}",
                                         field=f"{prefix}nodes")
        gpus = _number(data, "gpus", prefix, 0, integer=True)
        per_node = None
        if data.get("gpus_per_node") is not None:
            per_node = _number(data, "gpus_per_node", prefix, 0, integer=True)
            if "gpus" in data and data.get("gpus") is not None and gpus != per_node:
                raise errors.ValidationError(
                    f"{prefix}gpus_per_node: {per_node} differs from gpus ({gpus}); both "
                    "count the GPUs of each node, so give one of them",
                    field=f"{prefix}gpus_per_node")
            gpus = per_node
        return cls(
            require_cuda=_bool(data, "require_cuda", prefix),
            prefer_cuda=_bool(data, "prefer_cuda", prefix),
            gpus=gpus,
            min_vram_gib=_number(data, "min_vram_gib", prefix, 0.0),
            min_ram_gib=_number(data, "min_ram_gib", prefix, 0.0),
            min_cpus=_number(data, "min_cpus", prefix, 0.0),
            allowed_hosts=_globs(data, "allowed_hosts", prefix),
            labels=_labels(data, "labels", prefix),
            nodes=nodes,
            gpus_per_node=per_node,
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["allowed_hosts"] = list(self.allowed_hosts)
        # Left out at their defaults: a manifest job's id hashes its constraints, and the
        # jobs defined before these keys existed must keep theirs.
        if self.nodes == 1:
            del d["nodes"]
        if self.gpus_per_node is None:
            del d["gpus_per_node"]
        return d

    @property
    def needs_cuda(self) -> bool:
        return self.require_cuda or self.gpus > 0 or self.min_vram_gib > 0


@dataclass(frozen=True)
class GPU:
    index: int
    name: str = ""
    vram_gib: float = 0.0
    uuid: str = ""


@dataclass(frozen=True)
class Capabilities:
    """What a worker reports about its host (docs/scheduling.md)."""

    host_id: str
    hostname: str = ""
    os: str = ""
    arch: str = ""
    cpus: float = 0.0
    ram_gib: float = 0.0
    gpus: tuple[GPU, ...] = ()
    cuda_driver: str | None = None
    python: str | None = None
    torch: str | None = None
    git_commit: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    slots: int = 1
    #: The kind of agent (docs/executors.md): ``local`` runs processes on this host and takes
    #: runs of executor ``agent``; ``slurm`` submits jobs to a cluster and takes ``slurm`` runs.
    executor: str = "local"
    #: Most nodes one run may span through this worker (a Slurm partition's node count).
    nodes: int = 1
    #: Free-form extras the agent adds (kept, never interpreted by the scheduler).
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def has_cuda(self) -> bool:
        return bool(self.gpus)

    @property
    def max_vram_gib(self) -> float:
        return max((g.vram_gib for g in self.gpus), default=0.0)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], prefix: str = "capabilities.") -> Capabilities:
        if not isinstance(data, Mapping):
            raise errors.ValidationError("capabilities: expected an object", field="capabilities")
        # Read with the looser name rule: claims and explanations read stored rows, and one
        # kept from an older release must not break them. Host ids are checked where they
        # enter (validate_host_id).
        host_id = data.get("host_id")
        if not isinstance(host_id, str) or not _NAME_RE.match(host_id):
            raise errors.ValidationError(
                f"{prefix}host_id: expected a host name, got {host_id!r}", field=f"{prefix}host_id"
            )
        raw_gpus = data.get("gpus") or []
        if not isinstance(raw_gpus, list):
            raise errors.ValidationError(f"{prefix}gpus: expected a list", field=f"{prefix}gpus")
        gpus = []
        for i, g in enumerate(raw_gpus):
            p = f"{prefix}gpus[{i}]."
            if not isinstance(g, Mapping):
                raise errors.ValidationError(f"{p[:-1]}: expected an object", field=p[:-1])
            gpus.append(GPU(index=_number(g, "index", p, i, integer=True),
                            name=str(g.get("name", "")),
                            vram_gib=_number(g, "vram_gib", p, 0.0),
                            uuid=str(g.get("uuid", ""))))
        known = set(cls.__dataclass_fields__) - {"extra"}

        def opt_str(key: str) -> str | None:
            v = data.get(key)
            return None if v is None else str(v)

        slots = _number(data, "slots", prefix, 1, integer=True)
        if slots < 1:
            raise errors.ValidationError(f"{prefix}slots: must be at least 1",
                                         field=f"{prefix}slots")
        nodes = _number(data, "nodes", prefix, 1, integer=True)
        if nodes < 1:
            raise errors.ValidationError(f"{prefix}nodes: must be at least 1",
                                         field=f"{prefix}nodes")
        executor = data.get("executor", "local")
        if not isinstance(executor, str) or not _EXECUTOR_RE.match(executor):
            raise errors.ValidationError(
                f"{prefix}executor: expected an executor name such as 'local' or 'slurm', "
                f"got {executor!r}", field=f"{prefix}executor")
        return cls(
            host_id=host_id,
            hostname=str(data.get("hostname", "")),
            os=str(data.get("os", "")),
            arch=str(data.get("arch", "")),
            cpus=_number(data, "cpus", prefix, 0.0),
            ram_gib=_number(data, "ram_gib", prefix, 0.0),
            gpus=tuple(gpus),
            cuda_driver=opt_str("cuda_driver"),
            python=opt_str("python"),
            torch=opt_str("torch"),
            git_commit=opt_str("git_commit"),
            labels=_labels(data, "labels", prefix),
            slots=slots,
            executor=executor,
            nodes=nodes,
            extra={k: v for k, v in data.items() if k not in known},
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["gpus"] = [asdict(g) for g in self.gpus]
        extra = d.pop("extra")
        d.update(extra)
        return d


@dataclass(frozen=True)
class HostPolicy:
    """Operator policy for one host, from the manifest's ``[[hosts]]``."""

    host_id: str
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    slots: int | None = None
    labels: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], prefix: str = "") -> HostPolicy:
        host_id = data.get("id", data.get("host_id"))  # checked strictly by the manifest parser
        if not isinstance(host_id, str) or not _NAME_RE.match(host_id):
            raise errors.ValidationError(f"{prefix}id: expected a host id, got {host_id!r}",
                                         field=f"{prefix}id")
        slots = data.get("slots")
        if slots is not None:
            slots = _number(data, "slots", prefix, 1, integer=True)
        return cls(host_id=host_id, allow=_globs(data, "allow", prefix),
                   deny=_globs(data, "deny", prefix), slots=slots,
                   labels=_labels(data, "labels", prefix))

    def admits(self, *names: str | None) -> bool:
        """True when the run (by name or blueprint) passes allow, then deny."""
        subjects = [n for n in names if n]
        if self.allow and not any(fnmatch.fnmatchcase(s, p) for s in subjects for p in self.allow):
            return False
        return not any(fnmatch.fnmatchcase(s, p) for s in subjects for p in self.deny)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.host_id, "allow": list(self.allow), "deny": list(self.deny),
                "slots": self.slots, "labels": dict(self.labels)}


def validate_name(value: Any, field: str) -> str:
    """A run, project, token or artifact-safe name."""
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise errors.ValidationError(
            f"{field}: expected 1-200 characters of letters, digits and ._:+@/- "
            f"(not starting with punctuation), got {value!r}",
            field=field,
        )
    return value


_TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+@/=-]{0,63}$")
#: Most tags one run may carry.
MAX_TAGS = 32


def validate_tags(value: Any, field: str = "tags") -> list[str]:
    """A run's tags: at most :data:`MAX_TAGS`, each 1-64 letters, digits and ``._:+@/=-``
    (no quotes or commas: filters match them in the stored text); repeats dropped."""
    if not isinstance(value, list | tuple):
        raise errors.ValidationError(f"{field}: expected a list of tags", field=field)
    out = list(dict.fromkeys(value))
    if len(out) > MAX_TAGS:
        raise errors.ValidationError(f"{field}: at most {MAX_TAGS} tags, got {len(out)}",
                                     field=field)
    for i, tag in enumerate(out):
        if not isinstance(tag, str) or not _TAG_RE.match(tag):
            raise errors.ValidationError(
                f"{field}[{i}]: expected 1-64 letters, digits and ._:+@/=- (not starting "
                f"with punctuation), got {tag!r}", field=f"{field}[{i}]")
    return out


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
