"""Metric points and their series (docs/metrics-and-artifacts.md), implemented once for
both databases in ``runyard.store.metrics``; the conventions for values are in
``runyard.store.values``."""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from runyard.store.interfaces.rows import Row
from runyard.store.interfaces.transaction import Transaction

if TYPE_CHECKING:
    from runyard.store.ingest import Batch


class MetricsStore(abc.ABC):
    """Metric points: written in batches, read as points, tags and downsampled series."""

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
                           limit: int = 1000, tags: Sequence[str] = (),
                           steps: Sequence[int] = (), at_after: float | None = None,
                           at_before: float | None = None,
                           after: tuple[str, int] | None = None) -> list[Row]: ...

    @abc.abstractmethod
    def metric_series(self, run_id: str, tag: str, *, points: int,
                      min_step: int | None = None, max_step: int | None = None
                      ) -> dict[str, Any]: ...

    @abc.abstractmethod
    def count_metric_points(self) -> int: ...
