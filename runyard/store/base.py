"""The one storage interface the rest of Runyard talks to.

Two levels, as in procrastinate: :class:`Store` answers reads and opens transactions;
:class:`Transaction` offers the small set of primitives the queue's rules are written in.
The rules themselves (what may change, when) live in :mod:`runyard.queue`, never here.
Rows are plain ``dict``s keyed by column name.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runyard.store.ingest import Batch

Row = dict[str, Any]


@dataclass(frozen=True)
class RunFilter:
    """Filters of ``GET /v1/runs``; every field is optional."""

    status: tuple[str, ...] = ()
    project: str | None = None
    name_like: str | None = None
    created_after: float | None = None
    created_before: float | None = None
    host_id: str | None = None
    ids: tuple[str, ...] = ()


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


class Transaction(abc.ABC):
    """Primitives valid inside one database transaction."""

    @abc.abstractmethod
    def lock_run(self, run_id: str) -> Row | None:
        """Read a run and hold its row lock until the transaction ends."""

    @abc.abstractmethod
    def insert_run(self, row: Mapping[str, Any]) -> None: ...

    @abc.abstractmethod
    def update_run(self, run_id: str, values: Mapping[str, Any],
                   expect_status: Sequence[str] | None = None) -> bool:
        """Update a run; with ``expect_status``, only if its status is one of them."""

    @abc.abstractmethod
    def delete_run(self, run_id: str) -> None: ...

    @abc.abstractmethod
    def append_event(self, run_id: str, *, kind: str, status: str, actor: str, attempt: int,
                     at: float, details: Mapping[str, Any] | None) -> int:
        """Append the run's next event and return its ``seq`` (the run must be locked)."""

    @abc.abstractmethod
    def claim_runs(self, grants: Sequence[Grant]) -> None:
        """Move still-queued runs to claimed, each with its new attempt and claim event, in
        a few statements for the whole batch. A run whose ``event_seq`` moved since it was
        read (or that is no longer queued) refuses the batch with a conflict."""

    @abc.abstractmethod
    def insert_event(self, row: Mapping[str, Any]) -> None:
        """Insert an event whose ``seq`` the caller already took from the run row."""

    @abc.abstractmethod
    def lock_attempt(self, attempt_id: str) -> Row | None: ...

    @abc.abstractmethod
    def insert_attempt(self, row: Mapping[str, Any]) -> None: ...

    @abc.abstractmethod
    def update_attempt(self, attempt_id: str, values: Mapping[str, Any]) -> None: ...

    @abc.abstractmethod
    def claim_candidates(self, worker: WorkerFilter, after: tuple[int, float, str] | None,
                         limit: int) -> list[Row]:
        """Queued runs the worker may be able to serve, best first (priority desc, then age),
        locked against other claimers where the dialect can (``SKIP LOCKED``). Their
        ``constraints`` are the stored JSON text."""

    @abc.abstractmethod
    def claim_candidates_many(self, pages: Sequence[tuple[WorkerFilter, int]]
                              ) -> list[list[Row]]:
        """The first page of :meth:`claim_candidates` for each ``(worker, limit)``, read
        together (in one round trip where the dialect can)."""

    @abc.abstractmethod
    def worker_states(self, host_ids: Sequence[str]) -> dict[str, Row]:
        """The rows of these workers (those registered), by host id, each with its host
        policy and its count of active attempts."""

    def worker_state(self, host_id: str) -> Row | None:
        """One worker's row, as :meth:`worker_states` gives it."""
        return self.worker_states([host_id]).get(host_id)

    @abc.abstractmethod
    def claim_view(self, host_ids: Sequence[str], seen_after: float
                   ) -> tuple[dict[str, Row], dict[str, int]]:
        """What a batch of claims starts from, read together (in one round trip where the
        dialect can): :meth:`worker_states`, and the free slots of each undrained CUDA
        worker seen after ``seen_after`` that has any (``prefer_cuda`` runs wait for those)."""

    @abc.abstractmethod
    def expired_attempts(self, now: float, limit: int) -> list[Row]:
        """Active attempts whose lease has lapsed, locked where the dialect can."""

    @abc.abstractmethod
    def extend_leases(self, until: float) -> int:
        """Move every active lease that ends before ``until`` out to ``until``; returns how
        many moved."""

    @abc.abstractmethod
    def stalled_candidates(self, now: float, limit: int) -> list[Row]:
        """Running runs whose last step is older than their ``stall_after_s``, not yet marked."""

    @abc.abstractmethod
    def upsert_worker(self, row: Mapping[str, Any]) -> None: ...

    @abc.abstractmethod
    def update_worker(self, host_id: str, values: Mapping[str, Any]) -> bool: ...

    @abc.abstractmethod
    def refresh_worker(self, host_id: str, token_name: str, values: Mapping[str, Any]) -> bool:
        """Update a worker that ``token_name`` registered; False when there is none (a new
        registration, or a host another token registered)."""

    @abc.abstractmethod
    def count_workers(self, *, token_name: str | None = None, besides: str | None = None
                      ) -> int:
        """Registered workers (those of ``token_name``), ``besides`` that host not counted."""

    @abc.abstractmethod
    def lock_token(self, name: str) -> Row | None:
        """The unrevoked token of that name, locked until the transaction ends (so a token's
        registrations are counted and its binding set one at a time)."""

    @abc.abstractmethod
    def bind_token(self, name: str, hosts: str) -> bool:
        """Set the binding of a token that has none; False when it has one already."""

    @abc.abstractmethod
    def delete_idle_workers(self, *, host_id: str | None = None,
                            seen_before: float | None = None) -> list[str]:
        """Delete the workers with no active attempt (that one, or those last seen before
        ``seen_before``); returns their host ids."""

    @abc.abstractmethod
    def active_attempts_on(self, host_id: str) -> list[Row]:
        """The active attempts held by this host (``id``, ``run_id``, ``number``)."""

    @abc.abstractmethod
    def upsert_host_policy(self, row: Mapping[str, Any]) -> None: ...

    @abc.abstractmethod
    def insert_progress(self, row: Mapping[str, Any]) -> None: ...

    @abc.abstractmethod
    def get_blueprint(self, name: str) -> Row | None: ...

    @abc.abstractmethod
    def run_by_job_key(self, job_key: str) -> Row | None: ...

    @abc.abstractmethod
    def unreferenced_blobs(self, candidates: Sequence[str]) -> list[str]:
        """Those of ``candidates`` no artifact or checkpoint refers to any more."""

    @abc.abstractmethod
    def run_blob_refs(self, run_id: str) -> list[str]: ...

    @abc.abstractmethod
    def savepoint(self) -> AbstractContextManager[None]:
        """A nested transaction: an exception inside undoes only what was done inside."""

    @abc.abstractmethod
    def rule_states(self, run_id: str) -> dict[str, Row]:
        """The run's rule states by rule key (the run must be locked: docs/rules.md)."""

    @abc.abstractmethod
    def put_rule_states(self, run_id: str, states: Mapping[str, Mapping[str, Any]]) -> None:
        """Insert or replace rule states of the (locked) run, by rule key."""

    @abc.abstractmethod
    def count_rule_hits(self, run_id: str, n: int) -> None:
        """Add ``n`` to the run's ``rule_hits``."""

    @abc.abstractmethod
    def add_notification(self, *, channel: str, run_id: str | None, kind: str, details: Any,
                         at: float) -> int:
        """Queue one delivery to ``channel`` in this transaction, with the run as it is now;
        failed at once when no such channel exists. Returns its id (see
        :func:`runyard.notifications.enqueue`, the one caller)."""


class Store(abc.ABC):
    """A Runyard database: SQLite or PostgreSQL behind one interface."""

    url: str
    dialect: str

    @abc.abstractmethod
    def transaction(self) -> AbstractContextManager[Transaction]:
        """A write transaction: committed on success, rolled back on any exception."""

    @abc.abstractmethod
    def upgrade(self, revision: str = "head") -> None:
        """Apply migrations up to ``revision``."""

    @abc.abstractmethod
    def downgrade(self, revision: str) -> None: ...

    @abc.abstractmethod
    def current_revision(self) -> str | None: ...

    @abc.abstractmethod
    def ping(self) -> bool:
        """True when the database answers."""

    @abc.abstractmethod
    def close(self) -> None: ...

    # Reads.
    @abc.abstractmethod
    def get_run(self, run_id: str) -> Row | None: ...

    @abc.abstractmethod
    def list_runs(self, filt: RunFilter, *, after_id: str | None = None, limit: int = 50,
                  sort: str = "-created_at", fields: Sequence[str] | None = None) -> list[Row]: ...

    @abc.abstractmethod
    def count_runs_by_status(self) -> dict[str, int]: ...

    @abc.abstractmethod
    def get_attempt(self, attempt_id: str) -> Row | None: ...

    @abc.abstractmethod
    def attempt_by_token_hash(self, token_hash: str) -> Row | None:
        """The attempt whose own credential hashes to ``token_hash`` (``id``, ``run_id``,
        ``number``, ``host_id``, ``active``), or None."""

    @abc.abstractmethod
    def get_attempt_and_run(self, attempt_id: str) -> tuple[Row, Row | None] | None:
        """An attempt and its run, read together (the lease check of every data call)."""

    @abc.abstractmethod
    def list_attempts(self, run_id: str) -> list[Row]: ...

    @abc.abstractmethod
    def active_attempts_of(self, host_id: str) -> list[Row]:
        """The active attempts held by this host: ``id``, ``run_id``, ``number``,
        ``external_id``, ``nodes`` (what the workers listing shows of an executor's jobs)."""

    @abc.abstractmethod
    def list_events(self, run_id: str, *, after_seq: int = 0, limit: int = 100,
                    order: str = "asc") -> list[Row]: ...

    @abc.abstractmethod
    def events_since(self, after_id: int, limit: int = 500) -> list[Row]:
        """Events of all runs with a global id above ``after_id`` (for live streams)."""

    @abc.abstractmethod
    def list_workers(self) -> list[Row]:
        """Workers with their host policy and active attempt count."""

    @abc.abstractmethod
    def get_worker(self, host_id: str) -> Row | None: ...

    @abc.abstractmethod
    def list_host_policies(self) -> list[Row]: ...

    @abc.abstractmethod
    def queued_runs(self, limit: int = 1000) -> list[Row]:
        """Queued runs in the order workers are offered them."""

    @abc.abstractmethod
    def iter_progress(self, run_id: str, limit: int = 20) -> Iterator[Row]:
        """The most recent progress snapshots of a run, newest first."""

    @abc.abstractmethod
    def list_progress(self, run_id: str, *, attempt: int | None = None,
                      after_id: int | None = None, limit: int = 100) -> list[Row]:
        """Progress snapshots oldest first, keyset by ``id`` (runyard.store.progress_history)."""

    @abc.abstractmethod
    def progress_series(self, run_id: str, *, points: int, attempt: int | None = None,
                        after_id: int | None = None) -> tuple[list[Row], int]:
        """The snapshot history downsampled to at most ``points`` buckets, and its size."""

    # ------------------------------------------------------------------ data plane
    # Metrics, logs, blobs, artifacts, checkpoints, blueprints, tokens, each implemented once
    # for both databases (runyard.store.metrics, .logs, .blobs, .catalog); the conventions for
    # values are in runyard.store.values, those for log offsets in runyard.store.logs.
    @abc.abstractmethod
    def add_metric_points(self, run_id: str, attempt: int,
                          points: Sequence[Mapping[str, Any]],
                          rows: Sequence[Sequence[Any]] = (),
                          then: Callable[[Transaction, Batch], None] | None = None) -> int:
        """Upsert ``{step, tag, value, at}`` points and ``(step, at, {tag: value})`` rows;
        ``then`` is called with the transaction and the checked batch after they are
        written, before the commit (the run is locked: its rules are evaluated there)."""

    @abc.abstractmethod
    def metric_tags(self, run_id: str, *, after: str | None = None,
                    limit: int | None = None) -> list[Row]: ...

    @abc.abstractmethod
    def list_metric_points(self, run_id: str, *, tag: str | None = None,
                           after_step: int | None = None, attempt: int | None = None,
                           limit: int = 1000) -> list[Row]: ...

    @abc.abstractmethod
    def metric_series(self, run_id: str, tag: str, *, points: int,
                      min_step: int | None = None, max_step: int | None = None
                      ) -> dict[str, Any]: ...

    @abc.abstractmethod
    def count_metric_points(self) -> int: ...

    @abc.abstractmethod
    def add_log_chunks(self, run_id: str, attempt: int, chunks: Sequence[Mapping[str, Any]],
                       at: float) -> int: ...

    @abc.abstractmethod
    def read_logs(self, run_id: str, *, attempt: int | None = None, stream: str = "stdout",
                  offset: int = 0, limit_bytes: int = 65536) -> dict[str, Any]: ...

    @abc.abstractmethod
    def add_blob(self, sha256: str, size: int) -> Row: ...

    @abc.abstractmethod
    def get_blob(self, sha256: str) -> Row | None: ...

    @abc.abstractmethod
    def delete_blob(self, sha256: str) -> bool: ...

    @abc.abstractmethod
    def add_artifact(self, run_id: str, attempt: int, name: str, kind: str, size: int,
                     sha256: str) -> Row: ...

    @abc.abstractmethod
    def list_artifacts(self, run_id: str) -> list[Row]: ...

    @abc.abstractmethod
    def unreferenced_blob_shas(self, candidates: Sequence[str]) -> list[str]: ...

    @abc.abstractmethod
    def add_checkpoint(self, run_id: str, attempt: int, step: int, status: str,
                       name: str | None = None, sha256: str | None = None,
                       size: int | None = None, metrics: Mapping[str, Any] | None = None
                       ) -> Row: ...

    @abc.abstractmethod
    def list_checkpoints(self, run_id: str) -> list[Row]: ...

    @abc.abstractmethod
    def delete_checkpoints(self, run_id: str, ids: Sequence[int]) -> list[str]: ...

    @abc.abstractmethod
    def put_blueprint(self, name: str, command: Sequence[str],
                      config_schema: Mapping[str, Any] | None, defaults: Mapping[str, Any],
                      source: str | None = None) -> Row: ...

    @abc.abstractmethod
    def list_blueprints(self) -> list[Row]: ...

    @abc.abstractmethod
    def get_blueprint(self, name: str) -> Row | None: ...

    @abc.abstractmethod
    def create_token(self, name: str, role: str, token_hash: str, *, hosts: str | None = None,
                     max_hosts: int | None = None) -> Row:
        """Store a token by its hash; ``hosts`` is a worker token's binding as stored
        (:func:`runyard.enrolment.encode`), ``max_hosts`` its cap of registered hosts."""

    @abc.abstractmethod
    def get_token(self, name: str) -> Row | None:
        """The unrevoked token of that name (without its hash), or None."""

    @abc.abstractmethod
    def token_by_hash(self, token_hash: str) -> Row | None: ...

    @abc.abstractmethod
    def list_tokens(self) -> list[Row]: ...

    @abc.abstractmethod
    def revoke_token(self, name: str) -> bool: ...

    @abc.abstractmethod
    def touch_token(self, name: str, at: float) -> None: ...

    @abc.abstractmethod
    def count_tokens(self) -> int: ...

    @abc.abstractmethod
    def job_keys(self, source: str | None = None) -> dict[str, Row]: ...

    @abc.abstractmethod
    def add_rule(self, project: str, name: str, spec: Mapping[str, Any], *,
                 owner: str | None, created_by: str) -> Row: ...

    @abc.abstractmethod
    def list_rules(self, project: str | None = None) -> list[Row]: ...

    @abc.abstractmethod
    def get_rule(self, rule_id: int) -> Row | None: ...

    @abc.abstractmethod
    def delete_rule(self, rule_id: int) -> bool: ...

    @abc.abstractmethod
    def rule_states(self, run_id: str) -> dict[str, Row]:
        """A run's rule states by rule key."""

    @abc.abstractmethod
    def runs_with_rules(self, statuses: Sequence[str], projects: Collection[str],
                        limit: int = 500) -> list[Row]:
        """Runs of ``statuses`` with rules of their own or of a project in ``projects``
        ("" among them: every run)."""
    # ------------------------------------------------------------------ notifications
    # Channels and the outbox (runyard.store.notifications; docs/notifications.md).
    @abc.abstractmethod
    def put_channel(self, name: str, kind: str, url: str, secret: str | None,
                    source: str | None) -> tuple[Row, bool]:
        """Create or replace a channel -> (row, whether anything changed)."""

    @abc.abstractmethod
    def get_channel(self, name: str) -> Row | None: ...

    @abc.abstractmethod
    def list_channels(self) -> list[Row]: ...

    @abc.abstractmethod
    def delete_channel(self, name: str) -> bool: ...

    @abc.abstractmethod
    def add_notification(self, *, channel: str, run_id: str | None, kind: str, details: Any,
                         at: float) -> int:
        """:meth:`Transaction.add_notification` in a transaction of its own."""

    @abc.abstractmethod
    def next_notification_due(self) -> float | None:
        """When the earliest pending delivery is due (None: none is pending)."""

    @abc.abstractmethod
    def claim_notifications(self, now: float, limit: int, hold_until: float,
                            claim: str) -> list[Row]:
        """Take due deliveries for one attempt each, never one another deliverer holds."""

    @abc.abstractmethod
    def finish_notification(self, notification_id: int, claim: str,
                            values: Mapping[str, Any]) -> bool:
        """Record an attempt's outcome if the row is still held under ``claim``."""

    @abc.abstractmethod
    def list_notifications(self, *, run_id: str | None = None, channel: str | None = None,
                           status: str | None = None, before_id: int | None = None,
                           limit: int = 50, existing_runs_only: bool = False) -> list[Row]:
        """The delivery log, newest first."""

    @abc.abstractmethod
    def get_notifications(self, ids: Sequence[int]) -> list[Row]: ...
