"""Asking a running training loop to save a checkpoint (docs/lifecycle.md, "Checkpoint
requests").

A request is one column of the run, ``checkpoint_requested_at``: set on a running run by a
user (``POST /v1/runs/{id}/checkpoint``, ``runyard checkpoint``) or a rule's ``checkpoint``
action, carried by every heartbeat answer while it is set, and cleared when the attempt
registers a checkpoint (whatever the loop saved: it answered) or ends. The request's time is
its identity: the agent writes it into ``RUNYARD_CHECKPOINT_REQUEST_FILE`` and the SDK
answers each request once, so a loop saves once per request however long the upload takes.

These are the steps :class:`runyard.queue.Queue` runs inside its transactions, under the run's
row lock.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runyard import errors
from runyard.models import Status
from runyard.store.base import Row, Transaction

#: The event a request appends (a registered checkpoint appends ``checkpoint``).
REQUESTED = "checkpoint_requested"


def request(tx: Transaction, run: Row, *, now: float, actor: str,
            details: Mapping[str, Any] | None = None) -> bool:
    """Record a request on the locked ``run``; False when one is pending already (nothing
    changes: asking twice is asking once). Refuses a run whose loop is not running."""
    status = Status(run["status"])
    if status is not Status.RUNNING:
        why = ("it has not started yet" if status in (Status.QUEUED, Status.CLAIMED)
               else "it is stopping" if status is Status.STOPPING else "it has ended")
        raise errors.Conflict(
            f"run {run['id']} is {status.value}: only a running run can be asked to save a "
            f"checkpoint ({why})", run_id=run["id"], status=status.value)
    if run["checkpoint_requested_at"] is not None:
        return False
    tx.update_run(run["id"], {"checkpoint_requested_at": now, "updated_at": now})
    tx.append_event(run["id"], kind=REQUESTED, status=status.value, actor=actor,
                    attempt=run["attempt"], at=now,
                    details={**(details or {}), "attempt": run["attempt"]})
    return True


def recorded(tx: Transaction, run: Row, attempt: int, details: Mapping[str, Any], *,
             now: float, actor: str) -> int:
    """Append the ``checkpoint`` event of a checkpoint that ``attempt`` registered; when it
    is the run's current attempt, it answers a pending request, which is cleared (the
    event then says ``"answers_request": true``). Returns the event's sequence number."""
    out = dict(details)
    pending = run["checkpoint_requested_at"] is not None
    if pending and run["attempt"] == attempt and run["attempt_id"] is not None:
        tx.update_run(run["id"], {"checkpoint_requested_at": None, "updated_at": now})
        out["answers_request"] = True
    return tx.append_event(run["id"], kind="checkpoint", status=run["status"], actor=actor,
                           attempt=attempt, at=now, details=out)
