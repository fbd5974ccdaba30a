"""The seam between a rule hit and the notification channels (docs/rules.md).

A hit that asks for ``notify:<channel>`` calls :func:`notify` once per channel, inside the
transaction that records the hit, so a durable outbox can take the delivery in the same
commit: nothing is sent twice, nothing lost. Until channels are wired to it, this records
nothing beyond the hit event itself, whose ``details`` list the channels under ``notify``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runyard.store.base import Row, Transaction


def notify(tx: Transaction, run: Row, channel: str, event: Mapping[str, Any]) -> None:
    """Hand one rule hit to ``channel``'s deliveries (``event``: the hit event as the API
    shows it). A no-op seam for now: the outbox of channels plugs in here."""
    del tx, run, channel, event
