"""What a run needs of a host, what a host offers, and the operator's policy for a host
(docs/scheduling.md, docs/executors.md): :class:`Constraints`, :class:`Capabilities` (with
its :class:`GPU` list), :class:`HostPolicy`, and which kind of worker serves which runs.

Frozen dataclasses read from what users and agents send, each field checked by
:mod:`runyard.fields`; ``from runyard.models import Constraints`` still works.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from runyard import errors
from runyard.fields import (
    NAME_RE,
    read_bool,
    read_globs,
    read_labels,
    read_number,
    reject_unknown,
)

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
        reject_unknown(data, cls.__dataclass_fields__, prefix)
        nodes = read_number(data, "nodes", prefix, 1, integer=True)
        if nodes < 1:
            raise errors.ValidationError(f"{prefix}nodes: must be at least 1, got {nodes}",
                                         field=f"{prefix}nodes")
        gpus = read_number(data, "gpus", prefix, 0, integer=True)
        per_node = None
        if data.get("gpus_per_node") is not None:
            per_node = read_number(data, "gpus_per_node", prefix, 0, integer=True)
            if "gpus" in data and data.get("gpus") is not None and gpus != per_node:
                raise errors.ValidationError(
                    f"{prefix}gpus_per_node: {per_node} differs from gpus ({gpus}); both "
                    "count the GPUs of each node, so give one of them",
                    field=f"{prefix}gpus_per_node")
            gpus = per_node
        return cls(
            require_cuda=read_bool(data, "require_cuda", prefix),
            prefer_cuda=read_bool(data, "prefer_cuda", prefix),
            gpus=gpus,
            min_vram_gib=read_number(data, "min_vram_gib", prefix, 0.0),
            min_ram_gib=read_number(data, "min_ram_gib", prefix, 0.0),
            min_cpus=read_number(data, "min_cpus", prefix, 0.0),
            allowed_hosts=read_globs(data, "allowed_hosts", prefix),
            labels=read_labels(data, "labels", prefix),
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
        if not isinstance(host_id, str) or not NAME_RE.match(host_id):
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
            gpus.append(GPU(index=read_number(g, "index", p, i, integer=True),
                            name=str(g.get("name", "")),
                            vram_gib=read_number(g, "vram_gib", p, 0.0),
                            uuid=str(g.get("uuid", ""))))
        known = set(cls.__dataclass_fields__) - {"extra"}

        def opt_str(key: str) -> str | None:
            v = data.get(key)
            return None if v is None else str(v)

        slots = read_number(data, "slots", prefix, 1, integer=True)
        if slots < 1:
            raise errors.ValidationError(f"{prefix}slots: must be at least 1",
                                         field=f"{prefix}slots")
        nodes = read_number(data, "nodes", prefix, 1, integer=True)
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
            cpus=read_number(data, "cpus", prefix, 0.0),
            ram_gib=read_number(data, "ram_gib", prefix, 0.0),
            gpus=tuple(gpus),
            cuda_driver=opt_str("cuda_driver"),
            python=opt_str("python"),
            torch=opt_str("torch"),
            git_commit=opt_str("git_commit"),
            labels=read_labels(data, "labels", prefix),
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
        if not isinstance(host_id, str) or not NAME_RE.match(host_id):
            raise errors.ValidationError(f"{prefix}id: expected a host id, got {host_id!r}",
                                         field=f"{prefix}id")
        slots = data.get("slots")
        if slots is not None:
            slots = read_number(data, "slots", prefix, 1, integer=True)
        return cls(host_id=host_id, allow=read_globs(data, "allow", prefix),
                   deny=read_globs(data, "deny", prefix), slots=slots,
                   labels=read_labels(data, "labels", prefix))

    def admits(self, *names: str | None) -> bool:
        """True when the run (by name or blueprint) passes allow, then deny."""
        subjects = [n for n in names if n]
        if self.allow and not any(fnmatch.fnmatchcase(s, p) for s in subjects for p in self.allow):
            return False
        return not any(fnmatch.fnmatchcase(s, p) for s in subjects for p in self.deny)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.host_id, "allow": list(self.allow), "deny": list(self.deny),
                "slots": self.slots, "labels": dict(self.labels)}
