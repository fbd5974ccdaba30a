"""The reads of a run's progress snapshots (docs/progress-protocol.md); snapshots are
kept by :meth:`runyard.store.interfaces.transaction.Transaction.insert_progress`."""

from __future__ import annotations

import abc
from collections.abc import Iterator

from runyard.store.interfaces.rows import Row


class ProgressStore(abc.ABC):
    """Progress snapshot history (implemented in ``runyard.store.progress_history``)."""

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
