"""A run's stdout and stderr, kept in chunks (docs/metrics-and-artifacts.md); the
conventions for offsets are in ``runyard.store.logs``, which implements them."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any


class LogsStore(abc.ABC):
    """Log chunks, appended and read by byte offset or tail."""

    @abc.abstractmethod
    def add_log_chunks(self, run_id: str, attempt: int, chunks: Sequence[Mapping[str, Any]],
                       at: float) -> int: ...

    @abc.abstractmethod
    def read_logs(self, run_id: str, *, attempt: int | None = None, stream: str = "stdout",
                  offset: int = 0, limit_bytes: int = 65536,
                  tail: int | None = None) -> dict[str, Any]: ...
