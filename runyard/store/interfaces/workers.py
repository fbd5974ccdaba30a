"""The reads of the worker registry: workers, their host policies and the attempts they
hold (docs/scheduling.md); registration and its changes go through a transaction."""

from __future__ import annotations

import abc

from runyard.store.interfaces.rows import Row


class WorkersStore(abc.ABC):
    """Workers and host policies, read."""

    @abc.abstractmethod
    def list_workers(self) -> list[Row]:
        """Workers with their host policy and active attempt count."""

    @abc.abstractmethod
    def get_worker(self, host_id: str) -> Row | None: ...

    @abc.abstractmethod
    def list_host_policies(self) -> list[Row]: ...

    @abc.abstractmethod
    def active_attempts_of(self, host_id: str) -> list[Row]:
        """The active attempts held by this host: ``id``, ``run_id``, ``number``,
        ``external_id``, ``nodes`` (what the workers listing shows of an executor's jobs)."""
