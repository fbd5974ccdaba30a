"""The one storage interface the rest of Runyard talks to.

Two levels, as in procrastinate: :class:`Store` answers reads and opens transactions;
:class:`Transaction` offers the small set of primitives the queue's rules are written in.
The rules themselves (what may change, when) live in :mod:`runyard.queue`, never here.
Rows are plain ``dict``s keyed by column name.

The interface is written one concept per module in :mod:`runyard.store.interfaces` (runs,
workers, progress, metrics, logs, blobs, catalog, rules, notifications), each matching the
mixin that implements it in :mod:`runyard.store`; :class:`Store` composes them. This module
names every part, so ``from runyard.store.base import Row, Store, Transaction`` works.
"""

from __future__ import annotations

import abc
from contextlib import AbstractContextManager

from runyard.store.interfaces.blobs import BlobsStore
from runyard.store.interfaces.catalog import CatalogStore
from runyard.store.interfaces.logs import LogsStore
from runyard.store.interfaces.metrics import MetricsStore
from runyard.store.interfaces.notifications import NotificationsStore
from runyard.store.interfaces.progress import ProgressStore
from runyard.store.interfaces.rows import Grant, Row, RunFilter, WorkerFilter
from runyard.store.interfaces.rules import RulesStore
from runyard.store.interfaces.runs import RunsStore
from runyard.store.interfaces.transaction import Transaction
from runyard.store.interfaces.workers import WorkersStore

__all__ = ["Grant", "Row", "RunFilter", "Store", "Transaction", "WorkerFilter"]


class Store(RunsStore, WorkersStore, ProgressStore, MetricsStore, LogsStore, BlobsStore,
            CatalogStore, RulesStore, NotificationsStore):
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
