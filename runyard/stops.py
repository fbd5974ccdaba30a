"""Stopping a run (docs/lifecycle.md): stop, preempt, a rule's stop, and cancel.

A stop asks an active run to end within a grace period: it moves to ``stopping``, every
heartbeat answer carries the order, and the attempt's end records the stop's intent as its
reason. A queued run is cancelled at once; a cancel is refused once a run is running.

These are the steps :class:`runyard.queue.Queue` runs inside its transactions; each locks
the run first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runyard import defaults, errors, transitions
from runyard.models import Reason, Status
from runyard.store.base import Transaction
from runyard.transitions import SYSTEM, Observer

#: What may ask a run to stop: a user (``stop``), the system to requeue it (``preempt``), a
#: cancel, and a rule that stops it (``rule``, the run ends stopped) or fails it (``fail``).
STOP_INTENTS = ("stop", "preempt", "rule", "fail", "cancel")


def stop(tx: Transaction, run_id: str, *, now: float, observer: Observer | None,
         grace_s: float = defaults.STOP_GRACE_S, actor: str = SYSTEM, intent: str = "stop",
         details: Mapping[str, Any] | None = None) -> None:
    """Ask the run to stop within ``grace_s``; a queued run is cancelled at once. ``details``
    join the status event's."""
    if intent not in STOP_INTENTS:
        raise errors.ValidationError(f"intent: unknown stop intent {intent!r}", field="intent")
    if isinstance(grace_s, bool) or not isinstance(grace_s, int | float) or grace_s < 0:
        raise errors.ValidationError("grace_seconds: expected a number >= 0",
                                     field="grace_seconds")
    run = transitions.lock(tx, run_id)
    status = Status(run["status"])
    if intent == "preempt":  # only an active run of an agent can be given back
        transitions.check_schedulable(run, "preempted")
        if not status.is_active:
            raise errors.IllegalTransition(status.value, "stopping", run_id=run_id)
    extra_details = dict(details or {})
    if status is Status.QUEUED:
        transitions.move(tx, run, Status.CANCELLED, actor, now,
                         {"intent": intent, **extra_details}, observer=observer,
                         extra={"ended_at": now})
    elif status is Status.STOPPING:
        # A second stop may only shorten the grace period; a rule that fails the run
        # makes a stop of any other kind end it failed.
        deadline = min(run["stop_deadline"] or now + grace_s, now + grace_s)
        values: dict[str, Any] = {"stop_deadline": deadline, "updated_at": now}
        if intent == "fail" and run["stop_intent"] in ("stop", "rule"):
            values["stop_intent"] = "fail"
        tx.update_run(run_id, values)
    elif status.is_active:
        transitions.move(tx, run, Status.STOPPING, actor, now,
                         {"intent": intent, "grace_s": grace_s, **extra_details},
                         observer=observer,
                         extra={"stop_intent": intent, "stop_requested_at": now,
                                "stop_deadline": now + grace_s})
    else:
        raise errors.IllegalTransition(status.value, Status.STOPPING.value, run_id=run_id)


def cancel(tx: Transaction, run_id: str, *, now: float, observer: Observer | None,
           actor: str = SYSTEM) -> None:
    """Cancel a run that has not started running; running runs must be stopped instead."""
    run = transitions.lock(tx, run_id)
    status = Status(run["status"])
    if status is Status.CLAIMED:
        # The worker has not started it yet: end the attempt; its lease is now fenced.
        if run["attempt_id"]:
            tx.update_attempt(run["attempt_id"], {
                "active": False, "ended_at": now,
                "termination_reason": Reason.STOPPED.value})
        transitions.move(tx, run, Status.CANCELLED, actor, now, {}, observer=observer,
                         extra={"ended_at": now, "termination_reason": Reason.STOPPED.value})
    elif status is Status.QUEUED:
        transitions.move(tx, run, Status.CANCELLED, actor, now, {}, observer=observer,
                         extra={"ended_at": now})
    else:
        raise errors.IllegalTransition(status.value, Status.CANCELLED.value, run_id=run_id)
