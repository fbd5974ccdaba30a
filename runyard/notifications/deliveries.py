"""Deliveries: putting a notification in the outbox, and when a failed one is tried again.

:func:`enqueue` is the one door into the outbox. It writes a row and nothing else (no
network): the server's deliverer (:mod:`runyard.server.deliverer`) sends it later, so a slow
or dead receiver never holds up whoever enqueued. It is safe inside any write transaction,
ingest's included: it refuses nothing. A channel that does not exist makes a delivery that
failed at once, naming the reason, where the delivery log shows it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runyard import defaults, jsonvalues, nonfinite

if TYPE_CHECKING:  # the store is the server's; this module is imported by clients too
    from runyard.store.base import Store, Transaction

#: Longest ``kind`` stored; longer ones are cut.
KIND_MAX = 32
#: Stored channel names and run ids are cut to their columns' widths.
CHANNEL_MAX = 200
RUN_ID_MAX = 40


def enqueue(target: Store | Transaction, *, channel: str, run_id: str | None, kind: str,
            payload: Mapping[str, Any] | None, at: float | None = None) -> int:
    """Queue one notification for ``channel``; returns the delivery's id.

    ``target`` is a store (the row is written in a transaction of its own) or an open
    transaction (the row commits or rolls back with the caller's other writes, so a rule's
    hit and its notification are recorded together). ``kind`` says what happened (``rule``,
    ``status``, ``test``...), ``payload`` the details (a rule hit's ``{rule, tag, step,
    value, ...}``; a ``message`` key, when given, is the text Slack shows). The run's id,
    name, project and status at this moment are added by the store. ``at`` defaults to now.

    Never raises for its input: NaN and infinite values are spelled as strings, text that
    is not valid Unicode is made printable, and an unknown channel makes a failed delivery.
    """
    details = nonfinite.to_wire(dict(payload) if isinstance(payload, Mapping) else {})
    if not isinstance(details, dict):  # pragma: no cover - a Mapping copies to a dict
        details = {}
    return target.add_notification(
        channel=_cut(channel, CHANNEL_MAX), run_id=None if run_id is None else
        _cut(run_id, RUN_ID_MAX), kind=_cut(kind, KIND_MAX) or "event", details=details,
        at=time.time() if at is None else float(at))


def _cut(text: Any, most: int) -> str:
    return jsonvalues.safe_copy(str(text), float)[:most]  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Policy:
    """How deliveries are made: the bounds of one attempt and the retries after it."""

    timeout_s: float = defaults.NOTIFY_TIMEOUT_S
    max_attempts: int = defaults.NOTIFY_MAX_ATTEMPTS
    backoff_s: float = defaults.NOTIFY_BACKOFF_S
    backoff_max_s: float = defaults.NOTIFY_BACKOFF_MAX_S
    concurrency: int = defaults.NOTIFY_CONCURRENCY
    poll_s: float = defaults.NOTIFY_POLL_S

    def retry_delay(self, attempts: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds before the next attempt, after ``attempts`` failed ones: ``backoff_s``
        doubled per further attempt up to ``backoff_max_s``, drawn between half and all of
        it, so receivers that came back are not hit by every delivery at once."""
        full = min(self.backoff_max_s, self.backoff_s * 2.0 ** min(max(attempts - 1, 0), 60))
        return full / 2 + rand() * full / 2

    def gives_up(self, attempts: int) -> bool:
        """Whether a delivery that failed ``attempts`` times is failed for good."""
        return attempts >= self.max_attempts
