"""The run lifecycle (docs/lifecycle.md): submit, claim, heartbeat, complete, fail, stop,
cancel, requeue, restart, delete, sweep and explain.

Every rule of what may happen to a run lives here or in a module of its own, written against
the narrow :class:`runyard.store.base.Transaction`: a status change and its event in
:mod:`runyard.transitions`, stops and cancels in :mod:`runyard.stops`, requeue and restart in
:mod:`runyard.restarts`, runs no agent ran in :mod:`runyard.local_runs`, checkpoint requests in
:mod:`runyard.checkpoint_requests`. Which run a claim gets is :mod:`runyard.claiming`'s, and
why a run waits is :mod:`runyard.eligibility`'s. Each public method is one transaction:
it either happens entirely, with its events, or not at all. Lock order is always run, then
attempt, so PostgreSQL never deadlocks on us.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from runyard import (
    checkpoint_requests,
    claiming,
    defaults,
    eligibility,
    errors,
    fleet,
    local_runs,
    models,
    restarts,
    retry,
    stops,
    submission,
    transitions,
)
from runyard.models import Reason, Status
from runyard.stops import STOP_INTENTS
from runyard.store.base import Row, Store, Transaction
from runyard.transitions import SYSTEM, Observer

log = logging.getLogger(__name__)

#: Names of the lifecycle's parts that callers import from here.
__all__ = ["STOP_INTENTS", "SYSTEM", "Observer", "Queue"]


class Queue:
    """The lifecycle rules over a :class:`Store`."""

    def __init__(self, store: Store, *, stale_after_s: float = defaults.STALE_AFTER_S,
                 claim_scan: int = defaults.CLAIM_SCAN,
                 clock: Callable[[], float] = time.time) -> None:
        if stale_after_s <= 0:
            raise errors.ConfigError("stale_after_s: must be above 0")
        self.store = store
        self.stale_after_s = stale_after_s
        self.clock = clock
        self.claimer = claiming.Claimer(store, lease_s=stale_after_s, claim_scan=claim_scan,
                                        clock=clock)
        #: The worker registry the claims read (registration, drain, host policies).
        self.fleet = fleet.Fleet(store, clock=clock)
        self._grace_due = False
        #: Told of every status change and snapshot, in its transaction (the server sets it).
        self.observer: Observer | None = None

    # ------------------------------------------------------------------ submit
    def submit(self, request: Mapping[str, Any], *, actor: str = SYSTEM,
               owner: str | None = None) -> tuple[Row, bool]:
        """Queue a run. Returns ``(run, created)``; a known ``job_key`` returns the existing run.

        A request with ``executor = "local"`` starts running at once (see :meth:`start_local`).
        """
        now = self.clock()
        with self.store.transaction() as tx:
            job_key = request.get("job_key") if isinstance(request, Mapping) else None
            if isinstance(job_key, str):
                existing = tx.run_by_job_key(job_key)
                if existing is not None:
                    return existing, False
            bp_name = request.get("blueprint") if isinstance(request, Mapping) else None
            bp = tx.get_blueprint(bp_name) if isinstance(bp_name, str) else None
            row = submission.build_run(request, bp, owner=owner or actor, now=now)
            tx.insert_run(row)
            transitions.event(tx, row["id"], "status", Status.QUEUED, actor, 0, now,
                              {"priority": row["priority"]})
            created = tx.lock_run(row["id"])
        assert created is not None
        return created, True

    def start_local(self, request: Mapping[str, Any], *, host_id: str, actor: str = SYSTEM,
                    owner: str | None = None, workdir: str | None = None) -> claiming.Claim:
        """Create a run started by hand (notebook, script): it is running already, with an
        attempt and a lease held by the caller, so it has the same lifecycle as a scheduled one."""
        host_id, now = models.local_host(host_id), self.clock()  # never a worker's slots
        with self.store.transaction() as tx:
            return local_runs.start(tx, request, host_id=host_id, actor=actor, owner=owner,
                                    workdir=workdir, now=now, lease_s=self.stale_after_s)

    def record_ended(self, run: Row, attempts: Sequence[Row], events: Sequence[Row], *,
                     actor: str, origin: str) -> tuple[Row, bool]:
        """Create a run that ran and ended elsewhere (``runyard sync``) with its ended
        attempts and its events in their own sequence, then an ``imported`` event. Returns
        ``(run, created)``: a known id returns the existing run and changes nothing."""
        local_runs.check_ended(run, attempts)
        with self.store.transaction() as tx:
            return local_runs.record_ended(tx, run, attempts, events, actor=actor,
                                           origin=origin, now=self.clock())

    # ------------------------------------------------------------------ claim
    def claim(self, host_id: str, *, free_slots: int | None = None,
              actor: str = SYSTEM) -> claiming.Claim | None:
        """Give the worker its best eligible queued run, or None.

        Best means highest priority, then oldest. ``prefer_cuda`` runs skip CPU workers while a
        CUDA worker has a free slot. The worker must be registered first. Claims made at the
        same time are served together (see :mod:`runyard.claiming`), each as if it had been
        made alone, in arrival order.
        """
        return self.claimer.claim(claiming.Ask(host_id, free_slots, actor))

    # ------------------------------------------------------------------ leased calls
    def _peek(self, attempt_id: str, now: float) -> Row:
        """The attempt, after ending it as ``lost`` if its lease lapsed and no sweep has yet:
        a lapsed lease is over at its expiry, not when the sweeper next passes, so a late
        heartbeat or completion is refused the same whenever it arrives."""
        self.grant_grace_if_due()
        peek = self.store.get_attempt(attempt_id)
        if peek is None:
            raise errors.NotFound(f"no attempt {attempt_id!r}")
        if peek["active"] and peek["lease_expires_at"] < now:
            self._lose_lapsed(peek["run_id"], attempt_id, now)
        return peek

    def _lose_lapsed(self, run_id: str, attempt_id: str, now: float) -> retry.Decision | None:
        """End the attempt as ``lost`` if, under the lock, its lease still lapsed."""
        with self.store.transaction() as tx:
            run = tx.lock_run(run_id)
            cur = tx.lock_attempt(attempt_id)
            # Re-check under the lock: a heartbeat may have won the race.
            if run is None or cur is None or not cur["active"] \
                    or cur["lease_expires_at"] >= now or run["attempt_id"] != cur["id"]:
                return None
            return self._finish_attempt(tx, run, cur, Reason.LOST, None,
                                        {"last_lease_expiry": cur["lease_expires_at"]},
                                        SYSTEM, now)

    def _fenced(self, tx: Transaction, peek: Row, lease: str) -> tuple[Row, Row]:
        """Lock the attempt's run and the attempt; refuse a stale or foreign lease."""
        attempt_id = peek["id"]
        run = tx.lock_run(peek["run_id"])
        att = tx.lock_attempt(attempt_id)
        if run is None or att is None:
            raise errors.NotFound(f"no attempt {attempt_id!r}")
        if not models.leases_match(att["lease"], lease):
            raise errors.LeaseConflict(f"attempt {attempt_id}: the lease does not match")
        if not att["active"] or run["attempt_id"] != attempt_id:
            why = att["termination_reason"] or "superseded"
            raise errors.LeaseConflict(
                f"attempt {attempt_id} of run {run['id']} is no longer active ({why}); "
                f"the run is {run['status']}")
        return run, att

    def heartbeat(self, attempt_id: str, lease: str, *, running: bool = False,
                  actor: str = SYSTEM) -> models.StopOrder:
        """Extend the lease; with ``running``, mark a claimed run as running. The answer says
        whether to stop, and whether a checkpoint is asked for."""
        now = self.clock()
        peek = self._peek(attempt_id, now)
        with self.store.transaction() as tx:
            run, att = self._fenced(tx, peek, lease)
            expires = now + self.stale_after_s
            values: dict[str, Any] = {"lease_expires_at": expires}
            if running and run["status"] == Status.CLAIMED.value:
                self._move(tx, run, Status.RUNNING, actor, now, {"worker": att["host_id"]},
                           extra={"started_at": now})
                values["running_at"] = now
            if run["status"] == Status.STOPPING.value:
                values["stop_ack"] = True
            tx.update_attempt(attempt_id, values)
            tx.update_worker(att["host_id"], {"last_seen_at": now})
        asked = run["checkpoint_requested_at"]
        if run["status"] == Status.STOPPING.value:
            deadline = run["stop_deadline"] or now
            return models.StopOrder(expires, True, run["stop_intent"], max(0.0, deadline - now),
                                    checkpoint_requested_at=asked)
        return models.StopOrder(expires, checkpoint_requested_at=asked)

    def record_progress(self, attempt_id: str, lease: str, snapshot: Mapping[str, Any], *,
                        renew_lease: bool = True) -> None:
        """Keep a progress snapshot (history and latest); a new step clears ``stalled``.
        ``renew_lease=False`` for reports from the training process itself (a Kubeflow
        trainer status): only its supervisor keeps the attempt alive."""
        now = self.clock()
        peek = self._peek(attempt_id, now)
        with self.store.transaction() as tx:
            run, att = self._fenced(tx, peek, lease)
            step = snapshot.get("step")
            step = step if isinstance(step, int) and not isinstance(step, bool) else None
            tx.insert_progress({"run_id": run["id"], "attempt": att["number"],
                                "seq": snapshot.get("seq") if isinstance(snapshot.get("seq"),
                                                                         int) else None,
                                "step": step, "received_at": now, "snapshot": dict(snapshot)})
            prev = (run.get("progress") or {}).get("step")
            values: dict[str, Any] = {"progress": dict(snapshot), "progress_updated_at": now,
                                      "updated_at": now}
            if step is not None and step != prev:
                values["last_step_at"] = now
                if run["stalled"]:
                    values["stalled"] = False
                    transitions.event(tx, run["id"], "resumed", Status(run["status"]),
                                      SYSTEM, att["number"], now, {"step": step})
            elif run["last_step_at"] is None:
                values["last_step_at"] = now
            tx.update_run(run["id"], values)
            if renew_lease:
                tx.update_attempt(attempt_id, {"lease_expires_at": now + self.stale_after_s})
            if self.observer is not None:
                self.observer.on_progress(tx, run, att["number"], snapshot)

    def complete(self, attempt_id: str, lease: str, *, exit_code: int = 0,
                 details: Mapping[str, Any] | None = None, actor: str = SYSTEM) -> Row:
        """The process exited 0."""
        return self._end(attempt_id, lease, Reason.COMPLETED, exit_code, details, actor)

    def fail(self, attempt_id: str, lease: str, *, reason: Reason | str,
             exit_code: int | None = None, stderr_tail: list[str] | None = None,
             details: Mapping[str, Any] | None = None, no_retry: bool = False,
             actor: str = SYSTEM) -> Row:
        """The attempt ended for ``reason``; the retry policy decides what becomes of the run."""
        reason = Reason.parse(reason.value if isinstance(reason, Reason) else reason)
        if reason is Reason.COMPLETED:
            raise errors.ValidationError("reason: use complete() for a completed attempt",
                                         field="reason")
        d = dict(details or {})
        if stderr_tail:
            d["stderr_tail"] = list(stderr_tail)[-defaults.STDERR_TAIL_LINES:]
        return self._end(attempt_id, lease, reason, exit_code, d, actor, no_retry=no_retry)

    def _end(self, attempt_id: str, lease: str, reason: Reason, exit_code: int | None,
             details: Mapping[str, Any] | None, actor: str, no_retry: bool = False) -> Row:
        now = self.clock()
        peek = self._peek(attempt_id, now)
        with self.store.transaction() as tx:
            run, att = self._fenced(tx, peek, lease)
            if no_retry:
                run = {**run, "no_retry": True}
                tx.update_run(run["id"], {"no_retry": True})
            self._finish_attempt(tx, run, att, reason, exit_code, details, actor, now)
            out = tx.lock_run(run["id"])
        assert out is not None
        return out

    def _finish_attempt(self, tx: Transaction, run: Row, att: Row, reason: Reason,
                        exit_code: int | None, details: Mapping[str, Any] | None, actor: str,
                        now: float) -> retry.Decision:
        decision = retry.decide(run, reason, exit_code, stop_acknowledged=bool(att["stop_ack"]))
        # The reason records what ended the attempt: a requested stop, not the exit itself.
        intent = run["stop_intent"]
        if decision.status is not Status.COMPLETED and reason is not Reason.LOST:
            if intent == "preempt":
                reason = Reason.PREEMPTED
            elif intent in ("stop", "cancel", "restart"):
                reason = Reason.STOPPED
            elif intent in ("rule", "fail"):
                reason = Reason.RULE
        tx.update_attempt(att["id"], {
            "active": False, "ended_at": now, "termination_reason": reason.value,
            "exit_code": exit_code, "details": dict(details) if details else None,
        })
        info = {"reason": reason.value, "worker": att["host_id"], "exit_code": exit_code,
                "decision": decision.why, **(details or {})}
        extra: dict[str, Any] = {"termination_reason": reason.value, "exit_code": exit_code,
                                 "stop_intent": None, "stop_deadline": None,
                                 "stop_requested_at": None, "checkpoint_requested_at": None}
        if decision.requeue:
            if decision.counts_as_error_restart:
                extra["error_restarts"] = int(run["error_restarts"]) + 1
            if run["stop_intent"] == "restart":
                extra["budget_start"] = run["attempt"]
                extra["error_restarts"] = 0
            extra.update(queued_at=now, attempt_id=None)
        else:
            extra["ended_at"] = now
        self._move(tx, run, decision.status, actor, now, info, extra=extra, attempt=att["number"])
        return decision

    # ------------------------------------------------------------------ user actions
    def stop(self, run_id: str, *, grace_s: float = defaults.STOP_GRACE_S, actor: str = SYSTEM,
             intent: str = "stop") -> Row:
        """Ask a run to stop within ``grace_s``; a queued run is cancelled at once."""
        with self.store.transaction() as tx:
            self.stop_in(tx, run_id, grace_s=grace_s, actor=actor, intent=intent)
            out = tx.lock_run(run_id)
        assert out is not None
        return out

    def stop_in(self, tx: Transaction, run_id: str, *, grace_s: float = defaults.STOP_GRACE_S,
                actor: str = SYSTEM, intent: str = "stop",
                details: Mapping[str, Any] | None = None) -> None:
        """:meth:`stop` inside the caller's transaction (a rule's action); ``details`` join
        the status event's."""
        stops.stop(tx, run_id, now=self.clock(), observer=self.observer, grace_s=grace_s,
                   actor=actor, intent=intent, details=details)

    def request_checkpoint(self, run_id: str, *, actor: str = SYSTEM,
                           details: Mapping[str, Any] | None = None) -> Row:
        """Ask a running run's training loop to save a checkpoint; the next heartbeat tells
        its agent (or its SDK). Asking while a request is pending changes nothing. A run that
        is not ``running`` is refused (409). ``details`` go into the event (a rule's name)."""
        with self.store.transaction() as tx:
            checkpoint_requests.request(tx, transitions.lock(tx, run_id), now=self.clock(),
                                        actor=actor, details=details)
            out = tx.lock_run(run_id)
        assert out is not None
        return out

    def checkpoint_recorded(self, run_id: str, attempt: int, details: Mapping[str, Any], *,
                            actor: str = SYSTEM) -> int:
        """The ``checkpoint`` event of a checkpoint the attempt registered, which answers
        (clears) a pending request of that attempt; returns the event's sequence number."""
        with self.store.transaction() as tx:
            return checkpoint_requests.recorded(tx, transitions.lock(tx, run_id), attempt,
                                                details, now=self.clock(), actor=actor)

    def preempt(self, run_id: str, *, grace_s: float = defaults.STOP_GRACE_S,
                actor: str = SYSTEM) -> Row:
        """Stop an active agent run so that it is requeued: its process saves what it needs
        on the stop file or SIGTERM and exits; the attempt ends ``preempted`` whatever its
        exit (counts against ``max_attempts``, never as an error)."""
        return self.stop(run_id, grace_s=grace_s, actor=actor, intent="preempt")

    def cancel(self, run_id: str, *, actor: str = SYSTEM) -> Row:
        """Cancel a run that has not started running; running runs must be stopped instead."""
        now = self.clock()
        with self.store.transaction() as tx:
            stops.cancel(tx, run_id, now=now, observer=self.observer, actor=actor)
            out = tx.lock_run(run_id)
        assert out is not None
        return out

    def requeue(self, run_id: str, *, actor: str = SYSTEM) -> Row:
        """Put a failed, stopped or cancelled run back in the queue with a fresh retry budget."""
        now = self.clock()
        with self.store.transaction() as tx:
            restarts.requeue(tx, run_id, now=now, observer=self.observer, actor=actor)
            out = tx.lock_run(run_id)
        assert out is not None
        return out

    def restart(self, run_id: str, *, constraints: Mapping[str, Any] | None = None,
                grace_s: float = defaults.STOP_GRACE_S, actor: str = SYSTEM) -> Row:
        """Queue a new attempt, stopping the current one first if active; optionally with new
        resources (constraints). The attempt it stops ends ``stopped``, whatever its exit."""
        now = self.clock()
        new: dict[str, Any] = {}
        if constraints is not None:
            new = submission.constraint_columns(models.Constraints.from_dict(constraints))
        with self.store.transaction() as tx:
            restarts.restart(tx, run_id, now=now, observer=self.observer, new=new,
                             grace_s=grace_s, actor=actor)
            out = tx.lock_run(run_id)
        assert out is not None
        return out

    def delete(self, run_id: str, *, actor: str = SYSTEM) -> list[str]:
        """Delete an ended run with everything it owns. Returns the sha256 of blobs that no
        other run refers to any more (the caller removes them from the blob store)."""
        with self.store.transaction() as tx:
            run = transitions.lock(tx, run_id)
            if Status(run["status"]).is_active:
                raise errors.Conflict(
                    f"run {run_id} is {run['status']}: an active run is not deleted (its "
                    "worker still writes to it); stop it first, then delete it")
            shas = tx.run_blob_refs(run_id)
            tx.delete_run(run_id)
            orphans = tx.unreferenced_blobs(shas)
        log.info("run %s deleted by %s (%d orphaned blobs)", run_id, actor, len(orphans))
        return orphans

    def add_event(self, run_id: str, kind: str, details: Mapping[str, Any] | None = None, *,
                  actor: str = SYSTEM) -> int:
        """Record a non-status event (warning, checkpoint, rule hit...) in the run's sequence."""
        now = self.clock()
        with self.store.transaction() as tx:
            run = transitions.lock(tx, run_id)
            return transitions.event(tx, run_id, kind, Status(run["status"]), actor,
                                     run["attempt"], now, details)

    def edit(self, run_id: str, request: Mapping[str, Any], *, actor: str = SYSTEM) -> Row:
        """Change a run's name, notes or tags (checked as at submission) and record an
        ``edited`` event naming what changed; returns the run."""
        values = submission.edit_values(request)
        now = self.clock()
        with self.store.transaction() as tx:
            run = transitions.lock(tx, run_id)
            changed = sorted(k for k, v in values.items() if run[k] != v)
            if changed:
                tx.update_run(run_id, {**values, "updated_at": now})
                # The notes themselves stay out of the event: they may be long.
                shown = {k: values[k] for k in changed if k != "notes"}
                transitions.event(tx, run_id, "edited", Status(run["status"]), actor,
                                  run["attempt"], now, {"changed": changed, **shown})
            return {**run, **values, "updated_at": now if changed else run["updated_at"]}

    # ------------------------------------------------------------------ housekeeping
    def note_outage(self) -> None:
        """The server could not hear heartbeats for a while (it was down, or its database
        was): before any lease is judged again, every active one gets a fresh grace."""
        self._grace_due = True

    def grant_grace_if_due(self) -> int:
        """After :meth:`note_outage`, give every active lease at least ``stale_after_s`` from
        now, once; returns how many moved. The silence was the server's, not the agents':
        they keep their attempts, and what they buffered meanwhile is taken under the same
        lease."""
        if not self._grace_due:
            return 0
        with self.store.transaction() as tx:
            moved = tx.extend_leases(self.clock() + self.stale_after_s)
        self._grace_due = False
        return moved

    def sweep(self, *, limit: int = 500) -> models.SweepResult:
        """End lapsed leases as ``lost`` (requeue or fail by policy) and mark stalled runs."""
        now = self.clock()
        result = models.SweepResult()
        with self.store.transaction() as tx:
            expired = tx.expired_attempts(now, limit)
        for att in expired:
            decision = self._lose_lapsed(att["run_id"], att["id"], now)
            if decision is None:
                continue
            result.lost.append(att["run_id"])
            if decision.requeue:
                result.requeued.append(att["run_id"])
        with self.store.transaction() as tx:
            for cand in tx.stalled_candidates(now, limit):
                run = tx.lock_run(cand["id"])
                if run is None or run["stalled"] or run["status"] != Status.RUNNING.value:
                    continue
                tx.update_run(cand["id"], {"stalled": True, "updated_at": now})
                transitions.event(tx, cand["id"], "stalled", Status.RUNNING, SYSTEM,
                                  run["attempt"], now,
                                  {"no_step_for_s": round(now - cand["last_step_at"], 3)})
                result.stalled.append(cand["id"])
        return result

    def explain(self, run_id: str) -> dict[str, Any]:
        """For a run: why it is not running (see :func:`runyard.eligibility.explain`)."""
        run = self.store.get_run(run_id)
        if run is None:
            raise errors.NotFound(f"no run {run_id!r}")
        return eligibility.explain(run, self.store.list_workers(), now=self.clock(),
                                   stale_after_s=self.stale_after_s)

    # ------------------------------------------------------------------ helpers
    def _move(self, tx: Transaction, run: Row, target: Status, actor: str, now: float,
              details: Mapping[str, Any], *, extra: Mapping[str, Any] | None = None,
              attempt: int | None = None) -> None:
        transitions.move(tx, run, target, actor, now, details, observer=self.observer,
                         extra=extra, attempt=attempt)
