"""The seam between a rule hit and the notification channels (docs/rules.md).

A hit that asks for ``notify:<channel>`` calls :func:`notify` once per channel, inside the
transaction that records the hit: the outbox row commits with the hit, so a notification is
neither lost (the hit is recorded) nor queued twice (the hit is not recorded twice). The
server's deliverer sends it (docs/notifications.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runyard.notifications import enqueue
from runyard.store.base import Row, Transaction


def notify(tx: Transaction, run: Row, channel: str, event: Mapping[str, Any]) -> None:
    """Queue one rule hit (``event``: the hit event as the API shows it) for ``channel``."""
    details = event.get("details") or {}
    kind = "status" if details.get("when") == "status" else "rule"
    enqueue(tx, channel=channel, run_id=run["id"], kind=kind,
            payload={**details, "seq": event.get("seq"), "attempt": event.get("attempt")},
            at=event.get("at"))
