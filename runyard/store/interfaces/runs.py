"""The reads of runs, their attempts and their events (docs/lifecycle.md); every change to
them goes through a :class:`runyard.store.interfaces.transaction.Transaction`."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

from runyard.store.interfaces.rows import Row, RunFilter


class RunsStore(abc.ABC):
    """Runs, attempts and events, read."""

    @abc.abstractmethod
    def get_run(self, run_id: str) -> Row | None: ...

    @abc.abstractmethod
    def list_runs(self, filt: RunFilter, *, after_id: str | None = None, limit: int = 50,
                  sort: str | Sequence[str] = "-created_at",
                  fields: Sequence[str] | None = None,
                  after: Sequence[Any] | None = None) -> list[Row]:
        """Runs matching ``filt`` in the order of ``sort`` (``key:asc|desc`` items, see
        :mod:`runyard.store.runlist`), after the position ``after`` (the sort keys' values
        of the last row shown, id last) or after the run ``after_id``."""

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
    def list_events(self, run_id: str, *, after_seq: int = 0, limit: int = 100,
                    order: str = "asc") -> list[Row]: ...

    @abc.abstractmethod
    def events_since(self, after_id: int, limit: int = 500) -> list[Row]:
        """Events of all runs with a global id above ``after_id`` (for live streams)."""

    @abc.abstractmethod
    def queued_runs(self, limit: int = 1000) -> list[Row]:
        """Queued runs in the order workers are offered them."""
