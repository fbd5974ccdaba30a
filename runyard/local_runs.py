"""Runs no agent ran (docs/sdk.md, docs/lifecycle.md): a run started by hand in a notebook or
a script, which is running at once with its caller as its worker, and a run that ran and
ended elsewhere and is recorded afterwards (``runyard sync``).

These are the steps :class:`runyard.queue.Queue` runs inside its transactions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from runyard import claiming, errors, submission, transitions
from runyard.models import Status
from runyard.store.base import Row, Transaction


def start(tx: Transaction, request: Mapping[str, Any], *, host_id: str, actor: str,
          owner: str | None, workdir: str | None, now: float,
          lease_s: float) -> claiming.Claim:
    """Create a run started by hand on ``host_id`` (a :func:`runyard.models.local_host`): it
    is running already, with an attempt and a lease of ``lease_s`` held by the caller, so it
    has the same lifecycle as a scheduled one."""
    req = {**request, "executor": "local"}
    row = submission.build_run(req, None, owner=owner or actor, now=now)
    row.update(status=Status.QUEUED.value, workdir=workdir)
    tx.insert_run(row)
    transitions.event(tx, row["id"], "status", Status.QUEUED, actor, 0, now,
                      {"executor": "local"})
    queued = tx.lock_run(row["id"])
    assert queued is not None
    grant = claiming.grant(queued, host_id, now, actor, lease_s)
    tx.claim_runs([grant])
    tx.update_run(row["id"], {"status": Status.RUNNING.value, "started_at": now})
    tx.update_attempt(grant.attempt_id, {"running_at": now, "workdir": workdir})
    transitions.event(tx, row["id"], "status", Status.RUNNING, actor, grant.number, now,
                      {"worker": host_id, "executor": "local"})
    run = tx.lock_run(row["id"])
    assert run is not None
    return claiming.Claim(run, grant.attempt_id, grant.number, grant.lease,
                          grant.lease_expires_at)


def check_ended(run: Row, attempts: Sequence[Row]) -> None:
    """Refuse to record a run that has not ended, or one with an attempt still active."""
    status = Status(run["status"])
    if not status.is_terminal or any(a["active"] for a in attempts):
        raise errors.Conflict(f"run {run['id']} is {status.value}: only ended runs are "
                              "recorded")


def record_ended(tx: Transaction, run: Row, attempts: Sequence[Row], events: Sequence[Row], *,
                 actor: str, origin: str, now: float) -> tuple[Row, bool]:
    """Create a run that ran and ended elsewhere with its ended attempts and its events in
    their own sequence, then an ``imported`` event. Returns ``(run, created)``: a known id
    returns the existing run and changes nothing."""
    existing = tx.lock_run(run["id"])
    if existing is not None:
        return existing, False
    tx.insert_run({**run, "event_seq": len(events)})
    for att in attempts:
        tx.insert_attempt(att)
    for seq, ev in enumerate(events, 1):
        tx.insert_event({**ev, "run_id": run["id"], "seq": seq})
    transitions.event(tx, run["id"], "imported", Status(run["status"]), actor, run["attempt"],
                      now, {"origin": origin, "executor": run["executor"]})
    out = tx.lock_run(run["id"])
    assert out is not None
    return out, True
