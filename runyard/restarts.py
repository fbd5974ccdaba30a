"""Putting a run back in the queue by hand (docs/lifecycle.md): requeue an ended run, or
restart any run, stopping its current attempt first.

Both give the run a fresh retry budget (``budget_start``, ``error_restarts``). A local run is
refused: it has no command, so no agent can run it.

These are the steps :class:`runyard.queue.Queue` runs inside its transactions; each locks
the run first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runyard import defaults, transitions
from runyard.models import Status
from runyard.store.base import Transaction
from runyard.transitions import SYSTEM, Observer


def requeue(tx: Transaction, run_id: str, *, now: float, observer: Observer | None,
            actor: str = SYSTEM) -> None:
    """Put a failed, stopped or cancelled run back in the queue with a fresh retry budget."""
    run = transitions.lock(tx, run_id)
    transitions.check_schedulable(run, "requeued")
    transitions.move(tx, run, Status.QUEUED, actor, now, {"requeued_by": actor},
                     observer=observer, extra={
                         "queued_at": now, "ended_at": None, "attempt_id": None,
                         "no_retry": False, "budget_start": run["attempt"], "error_restarts": 0,
                     })


def restart(tx: Transaction, run_id: str, *, now: float, observer: Observer | None,
            new: Mapping[str, Any], grace_s: float = defaults.STOP_GRACE_S,
            actor: str = SYSTEM) -> None:
    """Queue a new attempt, stopping the current one first if active; ``new`` are the
    constraint columns of new resources (empty: unchanged). The attempt it stops ends
    ``stopped``, whatever its exit."""
    run = transitions.lock(tx, run_id)
    transitions.check_schedulable(run, "restarted")
    status = Status(run["status"])
    if status.is_active:
        if new:
            tx.update_run(run_id, new)
        if status is Status.STOPPING:
            tx.update_run(run_id, {"stop_intent": "restart"})
        else:
            transitions.move(tx, run, Status.STOPPING, actor, now,
                             {"intent": "restart", "grace_s": grace_s}, observer=observer,
                             extra={"stop_intent": "restart", "stop_requested_at": now,
                                    "stop_deadline": now + grace_s})
    elif status is Status.QUEUED:
        if new:
            tx.update_run(run_id, {**new, "updated_at": now})
            transitions.event(tx, run_id, "resources", status, actor, run["attempt"], now,
                              {"constraints": new["constraints"]})
    else:
        transitions.move(tx, run, Status.QUEUED, actor, now, {"restarted_by": actor},
                         observer=observer,
                         extra={**new, "queued_at": now, "ended_at": None, "attempt_id": None,
                                "no_retry": False, "budget_start": run["attempt"],
                                "error_restarts": 0})
