"""The primitives valid inside one write transaction: the small set the queue's rules are
written in (:mod:`runyard.queue`), never the rules themselves."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from runyard.store.interfaces.rows import Grant, Row, WorkerFilter


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
