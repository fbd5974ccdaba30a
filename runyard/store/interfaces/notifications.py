"""Channels and the outbox of deliveries (docs/notifications.md); implemented in
``runyard.store.notifications``."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any

from runyard.store.interfaces.rows import Row


class NotificationsStore(abc.ABC):
    """Channels, and notifications queued, claimed, finished and listed."""

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
