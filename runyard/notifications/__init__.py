"""Notifications: channels, the durable outbox and what a delivery sends
(docs/notifications.md).

    from runyard.notifications import enqueue
    enqueue(tx_or_store, channel="team", run_id=run_id, kind="rule",
            payload={"rule": "flat", "tag": "val_loss", "step": 1200, "value": 0.31})

:func:`enqueue` only writes a row; the server's deliverer (``runyard.server.deliverer``)
sends it, retries it with backoff, and records the outcome in the delivery log.
"""

from __future__ import annotations

from runyard.notifications.deliveries import Policy, enqueue

__all__ = ["Policy", "enqueue"]
