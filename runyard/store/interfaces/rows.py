"""The values that cross the storage interface: rows, the filters of run listings and
claims, and the claims to write."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Row = dict[str, Any]


@dataclass(frozen=True)
class RunFilter:
    """Filters of ``GET /v1/runs``; every field is optional. Several values of one field
    match a run that has any of them; ``tags`` and ``labels`` match a run that has all."""

    status: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()
    #: The start of the id (hex digits only).
    id_prefix: str | None = None
    projects: tuple[str, ...] = ()
    #: SQL ILIKE patterns (``\\_`` and ``\\%`` match themselves).
    name_likes: tuple[str, ...] = ()
    versions: tuple[str, ...] = ()
    blueprints: tuple[str, ...] = ()
    owners: tuple[str, ...] = ()
    host_ids: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    #: ``(key, value)`` pairs of the run's required labels (its constraints).
    labels: tuple[tuple[str, str], ...] = ()
    created_after: float | None = None
    created_before: float | None = None


@dataclass(frozen=True)
class WorkerFilter:
    """What the SQL prefilter of a claim knows about the claiming worker."""

    has_cuda: bool
    gpus: int
    max_vram_gib: float
    ram_gib: float
    cpus: float
    #: Leave out ``prefer_cuda`` runs (a CPU worker while a CUDA worker has a free slot).
    skip_prefer_cuda: bool = False
    #: Keep only runs whose ``labels_key`` is one of these (None: no label prefilter).
    labels_keys: tuple[str, ...] | None = None
    #: The runs' ``executor`` this worker serves (``agent`` for a local agent, ``slurm``...).
    executor: str = "agent"


@dataclass(frozen=True, slots=True)
class Grant:
    """One claim to write: the run, read queued with ``attempt = number - 1`` and
    ``event_seq = seq - 1``, goes to ``host_id`` under a new attempt."""

    run_id: str
    attempt_id: str
    number: int
    seq: int
    host_id: str
    lease: str
    lease_expires_at: float
    at: float
    actor: str
    #: sha256 of the attempt's own credential (docs/security.md); None: none handed out.
    token_hash: str | None = None
