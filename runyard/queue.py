"""The run lifecycle (docs/lifecycle.md): submit, claim, heartbeat, complete, fail, stop,
cancel, requeue, restart, delete, sweep and explain.

Every rule lives here, written against the narrow :class:`runyard.store.base.Transaction`.
Each public method is one transaction: it either happens entirely, with its events, or not
at all. Lock order is always run, then attempt, so PostgreSQL never deadlocks on us.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runyard import defaults, eligibility, errors, models, retry, submission
from runyard.combining import Combiner
from runyard.models import Reason, Status
from runyard.store.base import Grant, Row, Store, Transaction, WorkerFilter

log = logging.getLogger(__name__)

SYSTEM = "system"
#: Eligibility verdicts (worker, constraints text) remembered between claims.
VERDICTS_KEPT = 4096


@dataclass(frozen=True)
class Claim:
    """What a worker gets from a successful claim."""

    run: Row
    attempt_id: str
    attempt: int
    lease: str
    lease_expires_at: float


@dataclass(frozen=True)
class StopOrder:
    """The server's answer to a heartbeat: keep going, or stop within ``grace_s``."""

    lease_expires_at: float
    stop: bool = False
    intent: str | None = None
    grace_s: float | None = None


@dataclass
class SweepResult:
    lost: list[str] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)
    stalled: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Ask:
    """One worker's claim, waiting to be served in a batch."""

    host_id: str
    free_slots: int | None
    actor: str


class _Picker:
    """Chooses runs for the claims of one batch: candidate pages are read once per distinct
    worker filter and shared, each constraints text is judged once per worker, and a run
    taken by an earlier claim of the batch is passed over."""

    def __init__(self, tx: Transaction, queue: Queue, cuda_free: dict[str, int]) -> None:
        self.tx = tx
        self.queue = queue
        self.taken: set[str] = set()
        self.granted: dict[str, int] = {}
        self._pages: dict[WorkerFilter, tuple[list[Row], bool]] = {}
        # Free slots of the live CUDA workers (``prefer_cuda`` runs wait for them), kept up
        # to date with the batch's own claims, which are not written yet.
        self._cuda_free = cuda_free

    def worker_filter(self, caps: models.Capabilities, policy: models.HostPolicy | None
                      ) -> WorkerFilter:
        """What the candidates query asks for this worker, as the batch stands now."""
        return WorkerFilter(has_cuda=caps.has_cuda, gpus=len(caps.gpus),
                            max_vram_gib=caps.max_vram_gib, ram_gib=caps.ram_gib,
                            cpus=caps.cpus, skip_prefer_cuda=self._skips_prefer_cuda(caps),
                            labels_keys=eligibility.served_labels_keys(
                                eligibility.effective_labels(caps, policy)))

    def _skips_prefer_cuda(self, caps: models.Capabilities) -> bool:
        """A worker without CUDA leaves ``prefer_cuda`` runs while a CUDA worker has room."""
        return not caps.has_cuda and any(n > 0 for n in self._cuda_free.values())

    def prefetch(self, wanted: Mapping[WorkerFilter, int]) -> None:
        """Read the first candidates page of each of these filters at once (one round trip
        on PostgreSQL); the counts are the claims expected to read it."""
        todo = [(wf, min(self.queue.claim_scan, max(8, 2 * n))) for wf, n in wanted.items()]
        for (wf, size), page in zip(todo, self.tx.claim_candidates_many(todo), strict=True):
            self._pages[wf] = (page, len(page) < size)

    def pick(self, caps: models.Capabilities, policy: models.HostPolicy | None,
             wf: WorkerFilter) -> Row | None:
        """The best run this worker may take, marked taken (and counted against its slots);
        None when there is none. ``wf`` is its :meth:`worker_filter` from earlier in the
        batch: only whether it skips ``prefer_cuda`` runs may have changed since."""
        skip = self._skips_prefer_cuda(caps)
        if skip != wf.skip_prefer_cuda:
            wf = dataclasses.replace(wf, skip_prefer_cuda=skip)
        rows, done = self._pages.get(wf) or ([], False)
        i = 0
        while True:
            for cand in rows[i:]:
                if cand["id"] in self.taken:
                    continue
                constraints = self._judge(cand, caps, policy)
                if constraints is not None:
                    self._take(cand["id"], caps.host_id)
                    self._pages[wf] = (rows, done)
                    return {**cand, "constraints": constraints}
            i = len(rows)
            if done:
                self._pages[wf] = (rows, done)
                return None
            # The SQL prefilter leaves few runs this worker cannot take: a short first page
            # (each candidate is a decoded row), twice as long each time past a run of
            # ineligible runs or of runs taken by this batch.
            size = min(self.queue.claim_scan, max(8, 2 * len(rows)))
            last = rows[-1] if rows else None
            page = self.tx.claim_candidates(
                wf, None if last is None else (last["priority"], last["created_at"],
                                               last["id"]), size)
            rows = rows + page
            done = len(page) < size

    def _judge(self, cand: Row, caps: models.Capabilities,
               policy: models.HostPolicy | None) -> dict[str, Any] | None:
        """The run's decoded constraints if this worker may serve it, else None. Runs share a
        few distinct constraints, so each is decoded and judged once per worker for as long
        as the worker's capabilities and policy stay the same (a host policy also looks at
        the run's name and blueprint)."""
        key = ((caps.host_id, cand["constraints"], cand["name"], cand["blueprint"]) if policy
               else (caps.host_id, cand["constraints"], None, None))
        memo = self.queue._verdicts
        known = memo.get(key)
        if known is not None and known[0] is caps and known[1] == policy:
            verdict = known[2]
        else:
            constraints = json.loads(key[1])
            judged = {**cand, "constraints": constraints}
            verdict = None if eligibility.unmet(judged, caps, policy) else constraints
            if len(memo) >= VERDICTS_KEPT:
                memo.clear()
            memo[key] = (caps, policy, verdict)
        return None if verdict is None else dict(verdict)

    def _take(self, run_id: str, host_id: str) -> None:
        self.taken.add(run_id)
        self.granted[host_id] = self.granted.get(host_id, 0) + 1
        if host_id in self._cuda_free:
            self._cuda_free[host_id] -= 1


class Queue:
    """The lifecycle rules over a :class:`Store`."""

    def __init__(self, store: Store, *, stale_after_s: float = defaults.STALE_AFTER_S,
                 claim_scan: int = defaults.CLAIM_SCAN,
                 clock: Callable[[], float] = time.time) -> None:
        if stale_after_s <= 0:
            raise errors.ConfigError("stale_after_s: must be above 0")
        self.store = store
        self.stale_after_s = stale_after_s
        self.claim_scan = claim_scan
        self.clock = clock
        self._caps_memo: dict[str, tuple[Any, models.Capabilities]] = {}
        self._verdicts: dict[tuple[str, str, Any, Any], tuple[
            models.Capabilities, models.HostPolicy | None, dict[str, Any] | None]] = {}
        self._claims: Combiner[_Ask, Claim | None] = Combiner(self._claim_batch)

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
            self._event(tx, row["id"], "status", Status.QUEUED, actor, 0, now,
                        {"priority": row["priority"]})
            created = tx.lock_run(row["id"])
        assert created is not None
        return created, True

    def start_local(self, request: Mapping[str, Any], *, host_id: str, actor: str = SYSTEM,
                    owner: str | None = None, workdir: str | None = None) -> Claim:
        """Create a run started by hand (notebook, script): it is running already, with an
        attempt and a lease held by the caller, so it has the same lifecycle as a scheduled one."""
        now = self.clock()
        req = {**request, "executor": "local"}
        with self.store.transaction() as tx:
            row = submission.build_run(req, None, owner=owner or actor, now=now)
            row.update(status=Status.QUEUED.value, workdir=workdir)
            tx.insert_run(row)
            self._event(tx, row["id"], "status", Status.QUEUED, actor, 0, now,
                        {"executor": "local"})
            queued = tx.lock_run(row["id"])
            assert queued is not None
            grant = self._grant_of(queued, host_id, now, actor)
            tx.claim_runs([grant])
            tx.update_run(row["id"], {"status": Status.RUNNING.value, "started_at": now})
            tx.update_attempt(grant.attempt_id, {"running_at": now})
            self._event(tx, row["id"], "status", Status.RUNNING, actor, grant.number, now,
                        {"worker": host_id, "executor": "local"})
            run = tx.lock_run(row["id"])
        assert run is not None
        return Claim(run, grant.attempt_id, grant.number, grant.lease, grant.lease_expires_at)

    # ------------------------------------------------------------------ workers
    def register_worker(self, caps: models.Capabilities, *, token_name: str | None = None) -> Row:
        """Record (or refresh) a worker's capabilities; drain state is kept across restarts."""
        now = self.clock()
        with self.store.transaction() as tx:
            tx.upsert_worker({
                "host_id": caps.host_id, "hostname": caps.hostname,
                "capabilities": caps.to_dict(), "has_cuda": caps.has_cuda, "slots": caps.slots,
                "token_name": token_name, "registered_at": now, "last_seen_at": now,
            })
            w = tx.worker_state(caps.host_id)
        assert w is not None
        return w

    def set_drained(self, host_id: str, drained: bool) -> None:
        """Drain (finish what runs, claim nothing new) or resume a worker."""
        with self.store.transaction() as tx:
            if not tx.update_worker(host_id, {"drained": drained}):
                raise errors.NotFound(f"no worker {host_id!r}")

    def set_host_policies(self, policies: Iterable[models.HostPolicy],
                          source: str | None = None) -> None:
        """Create or update host policies in place (from a manifest reload)."""
        now = self.clock()
        with self.store.transaction() as tx:
            for p in policies:
                tx.upsert_host_policy({
                    "host_id": p.host_id, "allow": list(p.allow), "deny": list(p.deny),
                    "slots": p.slots, "labels": dict(p.labels), "source": source,
                    "updated_at": now,
                })

    # ------------------------------------------------------------------ claim
    def claim(self, host_id: str, *, free_slots: int | None = None,
              actor: str = SYSTEM) -> Claim | None:
        """Give the worker its best eligible queued run, or None.

        Best means highest priority, then oldest. ``prefer_cuda`` runs skip CPU workers while a
        CUDA worker has a free slot. The worker must be registered first. Claims made at the
        same time are served together (one transaction and one commit for all, see
        :mod:`runyard.combining`), each as if it had been made alone, in arrival order.
        """
        return self._claims.call(_Ask(host_id, free_slots, actor))

    def _claim_batch(self, asks: Sequence[_Ask]) -> list[Claim | None | BaseException]:
        now = self.clock()
        out: list[Claim | None | BaseException] = [None] * len(asks)
        with self.store.transaction() as tx:
            states, cuda_free = tx.claim_view([a.host_id for a in asks],
                                              now - self.stale_after_s)
            picker = _Picker(tx, self, cuda_free)
            # The asks of registered, undrained workers with a free slot before this batch,
            # with their worker's capabilities, policy, free slots and filter.
            serving: list[tuple[int, _Ask, models.Capabilities, models.HostPolicy | None,
                                int, WorkerFilter]] = []
            for i, ask in enumerate(asks):
                w = states.get(ask.host_id)
                if w is None:
                    out[i] = errors.NotFound(f"worker {ask.host_id!r} is not registered")
                    continue
                if w["drained"]:
                    continue
                caps = self._capabilities(w)
                policy = eligibility.policy_from_row(w)
                free = eligibility.effective_slots(caps, policy) - int(w["active_attempts"])
                if ask.free_slots is not None:
                    free = min(free, ask.free_slots)
                if free > 0:
                    serving.append((i, ask, caps, policy, free,
                                    picker.worker_filter(caps, policy)))
            # Every worker filter's first page in one go, as the batch starts: a filter that
            # changes on the way (the last free CUDA slot taken) reads its own when needed.
            picker.prefetch(Counter(wf for *_, wf in serving))
            grants: list[Grant] = []
            for i, ask, caps, policy, free, wf in serving:
                if free <= picker.granted.get(ask.host_id, 0):
                    continue
                run = picker.pick(caps, policy, wf)
                if run is None:
                    continue
                grant = self._grant_of(run, ask.host_id, now, ask.actor)
                grants.append(grant)
                out[i] = Claim({**run, "attempt": grant.number, "event_seq": grant.seq},
                               grant.attempt_id, grant.number, grant.lease,
                               grant.lease_expires_at)
            tx.claim_runs(grants)
        return out

    def _capabilities(self, worker: Row) -> models.Capabilities:
        """The worker's parsed capabilities, parsed again only when they changed (comparing
        two small dicts costs far less than validating one on every claim)."""
        raw = worker["capabilities"]
        known = self._caps_memo.get(worker["host_id"])
        if known is not None and known[0] == raw:
            return known[1]
        caps = models.Capabilities.from_dict(raw)
        self._caps_memo[worker["host_id"]] = (raw, caps)
        return caps

    def _grant_of(self, run: Row, host_id: str, now: float, actor: str) -> Grant:
        """The next attempt of ``run`` (as read in this transaction) for ``host_id``."""
        return Grant(run_id=run["id"], attempt_id=submission.new_id(),
                     number=int(run["attempt"]) + 1, seq=int(run["event_seq"]) + 1,
                     host_id=host_id, lease=secrets.token_hex(16),
                     lease_expires_at=now + self.stale_after_s, at=now, actor=actor)

    # ------------------------------------------------------------------ leased calls
    def _peek(self, attempt_id: str, now: float) -> Row:
        """The attempt, after ending it as ``lost`` if its lease lapsed and no sweep has yet:
        a lapsed lease is over at its expiry, not when the sweeper next passes, so a late
        heartbeat or completion is refused the same whenever it arrives."""
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
                  actor: str = SYSTEM) -> StopOrder:
        """Extend the lease; with ``running``, mark a claimed run as running. The answer says
        whether to stop."""
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
        if run["status"] == Status.STOPPING.value:
            deadline = run["stop_deadline"] or now
            return StopOrder(expires, True, run["stop_intent"], max(0.0, deadline - now))
        return StopOrder(expires)

    def record_progress(self, attempt_id: str, lease: str, snapshot: Mapping[str, Any]) -> None:
        """Keep a progress snapshot (history and latest); a new step clears ``stalled``."""
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
                    self._event(tx, run["id"], "resumed", Status(run["status"]), SYSTEM,
                                att["number"], now, {"step": step})
            elif run["last_step_at"] is None:
                values["last_step_at"] = now
            tx.update_run(run["id"], values)
            tx.update_attempt(attempt_id, {"lease_expires_at": now + self.stale_after_s})

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
            elif intent in ("stop", "cancel"):
                reason = Reason.STOPPED
            elif intent == "rule":
                reason = Reason.RULE
        tx.update_attempt(att["id"], {
            "active": False, "ended_at": now, "termination_reason": reason.value,
            "exit_code": exit_code, "details": dict(details) if details else None,
        })
        info = {"reason": reason.value, "worker": att["host_id"], "exit_code": exit_code,
                "decision": decision.why, **(details or {})}
        extra: dict[str, Any] = {"termination_reason": reason.value, "exit_code": exit_code,
                                 "stop_intent": None, "stop_deadline": None,
                                 "stop_requested_at": None}
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
        if intent not in ("stop", "preempt", "rule", "cancel"):
            raise errors.ValidationError(f"intent: unknown stop intent {intent!r}", field="intent")
        if isinstance(grace_s, bool) or not isinstance(grace_s, int | float) or grace_s < 0:
            raise errors.ValidationError("grace_seconds: expected a number >= 0",
                                         field="grace_seconds")
        now = self.clock()
        with self.store.transaction() as tx:
            run = self._lock(tx, run_id)
            status = Status(run["status"])
            if status is Status.QUEUED:
                self._move(tx, run, Status.CANCELLED, actor, now, {"intent": intent},
                           extra={"ended_at": now})
            elif status is Status.STOPPING:
                # A second stop may only shorten the grace period.
                deadline = min(run["stop_deadline"] or now + grace_s, now + grace_s)
                tx.update_run(run_id, {"stop_deadline": deadline, "updated_at": now})
            elif status.is_active:
                self._move(tx, run, Status.STOPPING, actor, now,
                           {"intent": intent, "grace_s": grace_s},
                           extra={"stop_intent": intent, "stop_requested_at": now,
                                  "stop_deadline": now + grace_s})
            else:
                raise errors.IllegalTransition(status.value, Status.STOPPING.value, run_id=run_id)
            out = tx.lock_run(run_id)
        assert out is not None
        return out

    def preempt(self, run_id: str, *, grace_s: float = defaults.STOP_GRACE_S,
                actor: str = SYSTEM) -> Row:
        """Stop a run so that it is requeued (counts against ``max_attempts``)."""
        return self.stop(run_id, grace_s=grace_s, actor=actor, intent="preempt")

    def cancel(self, run_id: str, *, actor: str = SYSTEM) -> Row:
        """Cancel a run that has not started running; running runs must be stopped instead."""
        now = self.clock()
        with self.store.transaction() as tx:
            run = self._lock(tx, run_id)
            status = Status(run["status"])
            if status is Status.CLAIMED:
                # The worker has not started it yet: end the attempt; its lease is now fenced.
                if run["attempt_id"]:
                    tx.update_attempt(run["attempt_id"], {
                        "active": False, "ended_at": now,
                        "termination_reason": Reason.STOPPED.value})
                self._move(tx, run, Status.CANCELLED, actor, now, {},
                           extra={"ended_at": now, "termination_reason": Reason.STOPPED.value})
            elif status is Status.QUEUED:
                self._move(tx, run, Status.CANCELLED, actor, now, {}, extra={"ended_at": now})
            else:
                raise errors.IllegalTransition(status.value, Status.CANCELLED.value,
                                               run_id=run_id)
            out = tx.lock_run(run_id)
        assert out is not None
        return out

    def requeue(self, run_id: str, *, actor: str = SYSTEM) -> Row:
        """Put a failed, stopped or cancelled run back in the queue with a fresh retry budget."""
        now = self.clock()
        with self.store.transaction() as tx:
            run = self._lock(tx, run_id)
            self._move(tx, run, Status.QUEUED, actor, now, {"requeued_by": actor}, extra={
                "queued_at": now, "ended_at": None, "attempt_id": None, "no_retry": False,
                "budget_start": run["attempt"], "error_restarts": 0,
            })
            out = tx.lock_run(run_id)
        assert out is not None
        return out

    def restart(self, run_id: str, *, constraints: Mapping[str, Any] | None = None,
                grace_s: float = defaults.STOP_GRACE_S, actor: str = SYSTEM) -> Row:
        """Queue a new attempt, stopping the current one first if active; optionally with new
        resources (constraints)."""
        now = self.clock()
        new: dict[str, Any] = {}
        if constraints is not None:
            c = models.Constraints.from_dict(constraints)
            new = {"constraints": c.to_dict(), "require_cuda": c.needs_cuda,
                   "prefer_cuda": c.prefer_cuda, "gpus": c.gpus, "min_vram_gib": c.min_vram_gib,
                   "min_ram_gib": c.min_ram_gib, "min_cpus": c.min_cpus,
                   "labels_key": eligibility.labels_key(c.labels)}
        with self.store.transaction() as tx:
            run = self._lock(tx, run_id)
            status = Status(run["status"])
            if status.is_active:
                if new:
                    tx.update_run(run_id, new)
                if status is Status.STOPPING:
                    tx.update_run(run_id, {"stop_intent": "restart"})
                else:
                    self._move(tx, run, Status.STOPPING, actor, now,
                               {"intent": "restart", "grace_s": grace_s},
                               extra={"stop_intent": "restart", "stop_requested_at": now,
                                      "stop_deadline": now + grace_s})
            elif status is Status.QUEUED:
                if new:
                    tx.update_run(run_id, {**new, "updated_at": now})
                    self._event(tx, run_id, "resources", status, actor, run["attempt"], now,
                                {"constraints": new["constraints"]})
            else:
                self._move(tx, run, Status.QUEUED, actor, now, {"restarted_by": actor},
                           extra={**new, "queued_at": now, "ended_at": None, "attempt_id": None,
                                  "no_retry": False, "budget_start": run["attempt"],
                                  "error_restarts": 0})
            out = tx.lock_run(run_id)
        assert out is not None
        return out

    def delete(self, run_id: str, *, actor: str = SYSTEM) -> list[str]:
        """Delete an ended run with everything it owns. Returns the sha256 of blobs that no
        other run refers to any more (the caller removes them from the blob store)."""
        with self.store.transaction() as tx:
            run = self._lock(tx, run_id)
            if Status(run["status"]).is_active:
                raise errors.Conflict(
                    f"run {run_id} is {run['status']}: stop it before deleting it")
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
            run = self._lock(tx, run_id)
            return self._event(tx, run_id, kind, Status(run["status"]), actor, run["attempt"],
                               now, details)

    # ------------------------------------------------------------------ housekeeping
    def sweep(self, *, limit: int = 500) -> SweepResult:
        """End lapsed leases as ``lost`` (requeue or fail by policy) and mark stalled runs."""
        now = self.clock()
        result = SweepResult()
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
                self._event(tx, cand["id"], "stalled", Status.RUNNING, SYSTEM, run["attempt"],
                            now, {"no_step_for_s": round(now - cand["last_step_at"], 3)})
                result.stalled.append(cand["id"])
        return result

    def explain(self, run_id: str) -> dict[str, Any]:
        """For a queued run: which constraint fails on which registered worker."""
        run = self.store.get_run(run_id)
        if run is None:
            raise errors.NotFound(f"no run {run_id!r}")
        now = self.clock()
        out: dict[str, Any] = {"run": run_id, "status": run["status"], "workers": []}
        eligible = []
        for w in self.store.list_workers():
            caps = models.Capabilities.from_dict(w["capabilities"])
            policy = eligibility.policy_from_row(w)
            reasons = eligibility.unmet(run, caps, policy)
            slots = eligibility.effective_slots(caps, policy)
            busy = int(w["active_attempts"])
            state = []
            if w["drained"]:
                state.append("drained")
            if now - w["last_seen_at"] > self.stale_after_s:
                state.append(f"not seen for {now - w['last_seen_at']:.0f} s")
            if busy >= slots:
                state.append(f"all {slots} slots busy")
            if not reasons:
                eligible.append(w["host_id"])
            out["workers"].append({"host_id": w["host_id"], "eligible": not reasons,
                                   "unmet": reasons, "state": state,
                                   "slots": slots, "busy": busy})
        if run["status"] != Status.QUEUED.value:
            out["summary"] = f"run is {run['status']}, not waiting in the queue"
        elif not out["workers"]:
            out["summary"] = "no worker is registered yet"
        elif not eligible:
            out["summary"] = "no registered worker can ever serve this run"
        else:
            ready = [w["host_id"] for w in out["workers"] if w["eligible"] and not w["state"]]
            out["summary"] = (f"eligible on {', '.join(eligible)}; " +
                              ("waiting for its turn (priority, then age)" if ready else
                               "every eligible worker is busy, drained or offline"))
        return out

    # ------------------------------------------------------------------ helpers
    def _lock(self, tx: Transaction, run_id: str) -> Row:
        run = tx.lock_run(run_id)
        if run is None:
            raise errors.NotFound(f"no run {run_id!r}")
        return run

    def _move(self, tx: Transaction, run: Row, target: Status, actor: str, now: float,
              details: Mapping[str, Any], *, extra: Mapping[str, Any] | None = None,
              attempt: int | None = None) -> None:
        current = Status(run["status"])
        models.check_transition(current, target, run_id=run["id"])
        values = {"status": target.value, "updated_at": now, **(extra or {})}
        if not tx.update_run(run["id"], values, expect_status=[current.value]):
            raise errors.IllegalTransition(current.value, target.value, run_id=run["id"])
        self._event(tx, run["id"], "status", target, actor,
                    run["attempt"] if attempt is None else attempt, now, details)

    @staticmethod
    def _event(tx: Transaction, run_id: str, kind: str, status: Status, actor: str,
               attempt: int, now: float, details: Mapping[str, Any] | None) -> int:
        return tx.append_event(run_id, kind=kind, status=status.value, actor=actor,
                               attempt=attempt, at=now, details=details)
