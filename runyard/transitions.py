"""Moving a run from one status to another inside a transaction (docs/lifecycle.md).

The steps every part of the lifecycle shares (:mod:`runyard.queue`, :mod:`runyard.stops`,
:mod:`runyard.restarts`, :mod:`runyard.local_runs`): lock a run or refuse an unknown id, check
and apply a status change guarded by the status it was read in, append its event, and tell
the :class:`Observer` (the rule engine) in the same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from runyard import errors, models
from runyard.models import Status
from runyard.store.base import Row, Transaction

#: The actor of what the server does on its own (sweeps, retries, rules).
SYSTEM = "system"


class Observer(Protocol):
    """Told of changes inside their transaction (the rule engine, docs/rules.md)."""

    def on_transition(self, tx: Transaction, run: Row, target: Status,
                      details: Mapping[str, Any], attempt: int) -> None:
        """``run`` (as it was) moved to ``target``; ``details`` are its event's."""

    def on_progress(self, tx: Transaction, run: Row, attempt: int,
                    snapshot: Mapping[str, Any]) -> None:
        """A progress snapshot of ``run``'s attempt ``attempt`` was kept."""


def lock(tx: Transaction, run_id: str) -> Row:
    """The run, locked for the rest of ``tx``; an unknown id is :class:`errors.NotFound`."""
    run = tx.lock_run(run_id)
    if run is None:
        raise errors.NotFound(f"no run {run_id!r}")
    return run


def event(tx: Transaction, run_id: str, kind: str, status: Status, actor: str,
          attempt: int, now: float, details: Mapping[str, Any] | None) -> int:
    """Append an event to the run's sequence; returns its sequence number."""
    return tx.append_event(run_id, kind=kind, status=status.value, actor=actor,
                           attempt=attempt, at=now, details=details)


def move(tx: Transaction, run: Row, target: Status, actor: str, now: float,
         details: Mapping[str, Any], *, observer: Observer | None,
         extra: Mapping[str, Any] | None = None, attempt: int | None = None) -> None:
    """Move the locked ``run`` to ``target`` with its ``status`` event (``extra`` columns
    change with it); an illegal change, or one that lost a race, is
    :class:`errors.IllegalTransition`."""
    current = Status(run["status"])
    models.check_transition(current, target, run_id=run["id"])
    values = {"status": target.value, "updated_at": now, **(extra or {})}
    if not tx.update_run(run["id"], values, expect_status=[current.value]):
        raise errors.IllegalTransition(current.value, target.value, run_id=run["id"])
    number = run["attempt"] if attempt is None else attempt
    event(tx, run["id"], "status", target, actor, number, now, details)
    if observer is not None:
        observer.on_transition(tx, run, target, details, number)


def check_schedulable(run: Row, action: str) -> None:
    """Refuse to queue a local run again: it has no command, so no agent can run it."""
    if run["executor"] == "local":
        raise errors.NotSchedulable(
            f"run {run['id']} is a local run: only the process that started it can run "
            f"it, so it cannot be {action}; start it again from its script or notebook",
            run_id=run["id"])
