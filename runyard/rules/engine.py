"""The server's rule engine (docs/rules.md): evaluates a run's rules as its points,
snapshots, log lines and status changes arrive, and on the sweeper's clock (stalled,
runtime); keeps their state in the database and performs their actions.

Points and snapshots are evaluated in the transaction that stores them, status changes in
the one that makes them, each with the run's row locked: a replayed batch never counts twice
(a rule skips steps it has seen), two servers on one PostgreSQL database never fire a rule
twice, and a restart loses no patience count. Log lines are searched before any
transaction (a search may take a while) and only a match opens one. A run without rules
costs a dictionary lookup.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from runyard import errors, models
from runyard.queue import Queue
from runyard.rules import actions, conditions, logmatch
from runyard.rules.book import Effective, RuleBook
from runyard.rules.conditions import State
from runyard.store.base import Row, Store, Transaction
from runyard.store.ingest import Batch

log = logging.getLogger(__name__)

#: Seconds left of a run's ETA, from its row (None when it cannot be known).
EtaFn = Callable[[Row], float | None]
_STREAMS = {"both": ("stdout", "stderr"), "stdout": ("stdout",), "stderr": ("stderr",)}


class Engine:
    """Rules over one store and queue; the queue's :class:`~runyard.transitions.Observer`."""

    def __init__(self, store: Store, queue: Queue, *, book: RuleBook | None = None,
                 eta: EtaFn | None = None, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.queue = queue
        self.book = book or RuleBook(store)
        self.eta = eta
        self.clock = clock
        #: Hits counted by this process (exported as a Prometheus counter by the server).
        self.hits = 0

    def attach(self) -> Engine:
        """Make the queue tell this engine of status changes and snapshots."""
        self.queue.observer = self
        return self

    # ------------------------------------------------------------------ evaluation core
    def _guarded(self, tx: Transaction, what: str, run_id: str, fn: Callable[[], None]
                 ) -> None:
        """``fn`` in a savepoint of the caller's transaction: a hit that cannot be recorded
        is logged and undone, and never costs the points, snapshot or status change being
        stored."""
        try:
            with tx.savepoint():
                fn()
        except Exception:
            log.exception("rules of run %s: evaluating %s failed; the data is kept, the "
                          "rules skip it", run_id, what)

    def _evaluate(self, tx: Transaction, run_id: str, attempt: int,
                  rules: Sequence[Effective],
                  step: Callable[[Effective, State], Mapping[str, Any] | None]) -> None:
        """Run ``step`` for each rule on its state (the caller holds the run's lock), then
        write back the states that changed and fire the rules it reported a hit for.

        The evaluation itself only computes; a rule that cannot be evaluated is logged and
        skipped, and never costs the data being stored. Hits are recorded in a savepoint
        for the same reason; the usual batch, with none, writes only its states."""
        stored = tx.rule_states(run_id)
        changed: dict[str, dict[str, Any]] = {}
        hits: list[tuple[Effective, State, Mapping[str, Any]]] = []
        try:
            for eff in rules:
                row = stored.get(eff.key)
                before = State.of(row)
                if attempt < before.attempt:
                    continue  # a superseded attempt's late report
                state = conditions.fresh(before.for_attempt(attempt))
                state.attempt = attempt
                if state.fired:
                    continue
                evidence = step(eff, state)
                if evidence is not None:
                    hits.append((eff, state, evidence))
                    continue
                new = state.row()
                if row is None or any(row.get(k) != v for k, v in new.items()):
                    changed[eff.key] = new
        except Exception:
            log.exception("rules of run %s: evaluation failed; the data is kept, the rules "
                          "skip it", run_id)
            return
        if not hits:
            if changed:
                tx.put_rule_states(run_id, changed)
            return

        def record() -> None:
            for eff, state, evidence in hits:
                run = tx.lock_run(run_id)  # read now: an earlier action may have changed it
                if run is None:
                    return
                actions.fire(tx, self.queue, run, eff, state, evidence, attempt, self.clock())
                changed[eff.key] = state.row()
            tx.put_rule_states(run_id, changed)
            self.hits += len(hits)

        self._guarded(tx, "a hit", run_id, record)

    # ------------------------------------------------------------------ points
    def ingest_metrics(self, run: Row, attempt: int, points: Sequence[Any],
                       rows: Sequence[Any]) -> int:
        """Store a metrics batch of ``run``'s attempt (as the store does) and evaluate the
        run's metric rules on it in the same transaction."""
        rules = self.book.for_run(run).metric
        if not rules:
            return self.store.add_metric_points(run["id"], attempt, points, rows)

        def then(tx: Transaction, batch: Batch) -> None:
            self.on_points(tx, run["id"], attempt, batch, rules)

        return self.store.add_metric_points(run["id"], attempt, points, rows, then=then)

    def on_points(self, tx: Transaction, run_id: str, attempt: int, batch: Batch,
                  rules: Sequence[Effective]) -> None:
        """Evaluate metric rules on a stored batch (inside its transaction)."""
        by_tag = batch.by_tag
        wanted = [e for e in rules if e.rule.tag == "*" or e.rule.tag in by_tag]
        if not wanted:
            return

        def step(eff: Effective, state: State) -> Mapping[str, Any] | None:
            state.feed = "points"
            tag = eff.rule.tag or "*"
            cols = by_tag.items() if tag == "*" else [(tag, by_tag[tag])]
            for name, col in cols:
                hit = conditions.observe(eff.rule, state, name, col.steps, col.values,
                                         col.specials)
                if hit is not None:
                    return hit.evidence
            return None

        self._evaluate(tx, run_id, attempt, wanted, step)

    # ------------------------------------------------------------------ queue observer
    def on_progress(self, tx: Transaction, run: Row, attempt: int,
                    snapshot: Mapping[str, Any]) -> None:
        """A snapshot's metrics feed the metric rules that have seen no point yet."""
        metrics, step = snapshot.get("metrics"), snapshot.get("step")
        if not isinstance(metrics, Mapping) or not metrics or not isinstance(step, int) \
                or isinstance(step, bool):
            return
        rules = [e for e in self.book.for_run(run).metric
                 if e.rule.tag == "*" or e.rule.tag in metrics]
        if not rules:
            return

        def feed(eff: Effective, state: State) -> Mapping[str, Any] | None:
            hit = conditions.observe_snapshot(eff.rule, state, step, metrics)
            return None if hit is None else {**hit.evidence, "from": "snapshot"}

        self._evaluate(tx, run["id"], attempt, rules, feed)

    def on_transition(self, tx: Transaction, run: Row, target: models.Status,
                      details: Mapping[str, Any], attempt: int) -> None:
        """Status rules, on every status change (in its transaction)."""
        rules = self.book.for_run(run).status
        if not rules:
            return
        reason = details.get("reason")
        reason = reason if isinstance(reason, str) else None
        matching = [e for e in rules if conditions.status_matches(e.rule, target.value, reason)]
        if not matching:
            return

        def step(eff: Effective, state: State) -> Mapping[str, Any] | None:
            seen = conditions.status_matches(eff.rule, target.value, reason)
            return None if seen is None else {
                "status": target.value, "reason": reason, "matched": seen,
                "exit_code": details.get("exit_code")}

        self._guarded(tx, "a status change", run["id"],
                      lambda: self._fire_status(tx, run, attempt, matching, step))

    def _fire_status(self, tx: Transaction, run: Row, attempt: int,
                     matching: Sequence[Effective],
                     step: Callable[[Effective, State], Mapping[str, Any] | None]) -> None:
        # A status rule tells every change it watches (an attempt lost, then the next one
        # completed, are two): each change happens once, in one transaction.
        stored = tx.rule_states(run["id"])
        now = self.clock()
        changed: dict[str, dict[str, Any]] = {}
        for eff in matching:
            state = State.of(stored.get(eff.key))
            state.attempt = max(state.attempt, attempt)
            evidence = step(eff, state)
            if evidence is None:
                continue
            actions.fire(tx, self.queue, run, eff, state, evidence, attempt, now)
            self.hits += 1
            state.fired = False
            changed[eff.key] = state.row()
        if changed:
            tx.put_rule_states(run["id"], changed)

    # ------------------------------------------------------------------ logs
    def on_logs(self, run: Row, attempt: int, chunks: Sequence[dict[str, Any]]) -> None:
        """Search stored log chunks for the run's log rules; a match fires in a
        transaction of its own."""
        rules = self.book.for_run(run).log
        if not rules or not chunks:
            return
        try:
            self._search_logs(run, attempt, chunks, rules)
        except errors.RunyardError:
            raise  # the database: the agent sends the chunks again, and they are searched
        except Exception:
            log.exception("rules of run %s: searching its logs failed", run["id"])

    def _search_logs(self, run: Row, attempt: int, chunks: Sequence[dict[str, Any]],
                     rules: Sequence[Effective]) -> None:
        found: dict[str, logmatch.Found] = {}
        for eff in rules:
            pattern = eff.rule.pattern
            assert pattern is not None
            got = logmatch.search(pattern, chunks, _STREAMS[eff.rule.stream])
            if got is not None:
                found[eff.key] = got
        if not found:
            return
        matched = [e for e in rules if e.key in found]

        def step(eff: Effective, state: State) -> Mapping[str, Any] | None:
            got = found[eff.key]
            return {"stream": got.stream, "offset": got.offset, "line": got.line,
                    "pattern": eff.rule.pattern}

        def evaluate(tx: Transaction) -> None:
            if tx.lock_run(run["id"]) is not None:
                self._evaluate(tx, run["id"], attempt, matched, step)

        self._in_transaction(evaluate)

    def _in_transaction(self, fn: Callable[[Transaction], None]) -> None:
        with self.store.transaction() as tx:
            fn(tx)

    # ------------------------------------------------------------------ the sweeper's
    def sweep(self, *, limit: int = 500) -> int:
        """Evaluate stalled and runtime rules of running runs; returns how many fired."""
        now = self.clock()
        before = self.hits
        for run in self.store.runs_with_rules(("running",), self.book.timed_scopes(), limit):
            rules = self.book.for_run(run).timed
            due = [(e, ev) for e in rules if (ev := self._timed(e, run, now)) is not None]
            if not due:
                continue
            evidence = dict((e.key, ev) for e, ev in due)
            progress = run.get("progress") or {}
            at_step = progress.get("step") if isinstance(progress, Mapping) else None

            def step(eff: Effective, state: State, ev: dict[str, Any] = evidence,
                     at: Any = at_step) -> Mapping[str, Any] | None:
                if eff.rule.when == "stalled":
                    # Once per stall: the step it is stuck at tells one stall from the next.
                    mark = at if isinstance(at, int) and not isinstance(at, bool) else -1
                    if state.fired and state.last_step == mark:
                        return None
                    state.last_step = mark
                elif state.fired:
                    return None
                found: dict[str, Any] = ev[eff.key]
                return found

            def evaluate(tx: Transaction, run: Row = run,
                         due: list[tuple[Effective, dict[str, Any]]] = due,
                         step: Any = step) -> None:
                current = tx.lock_run(run["id"])
                if current is None or current["status"] != models.Status.RUNNING.value:
                    return
                self._evaluate_timed(tx, current, [e for e, _ in due], step)

            try:
                self._in_transaction(evaluate)
            except errors.RunyardError:
                log.warning("rules of run %s: sweep failed", run["id"], exc_info=True)
        return self.hits - before

    def _evaluate_timed(self, tx: Transaction, run: Row, rules: Sequence[Effective],
                        step: Callable[[Effective, State], Mapping[str, Any] | None]) -> None:
        attempt = int(run["attempt"])
        stored = tx.rule_states(run["id"])
        now = self.clock()
        changed: dict[str, dict[str, Any]] = {}
        for eff in rules:
            state = conditions.fresh(State.of(stored.get(eff.key)).for_attempt(attempt))
            state.attempt = attempt
            evidence = step(eff, state)
            if evidence is None:
                continue
            actions.fire(tx, self.queue, run, eff, state, evidence, attempt, now)
            self.hits += 1
            changed[eff.key] = state.row()
            run = tx.lock_run(run["id"]) or run
        if changed:
            tx.put_rule_states(run["id"], changed)

    def _timed(self, eff: Effective, run: Row, now: float) -> dict[str, Any] | None:
        rule = eff.rule
        if rule.when == "stalled":
            quiet = conditions.stalled(rule, now=now, last_step_at=run.get("last_step_at"),
                                       stall_after_s=float(run["stall_after_s"]))
            return None if quiet is None else {
                "no_step_for_s": round(quiet, 3),
                "after_s": rule.after_s or float(run["stall_after_s"])}
        eta = self.eta(run) if rule.eta and self.eta is not None else None
        return conditions.overtime(rule, now=now, started_at=run.get("started_at"), eta_s=eta)

    # ------------------------------------------------------------------ reading
    def describe(self, run: Row) -> list[dict[str, Any]]:
        """The run's effective rules as ``GET /v1/runs/{id}`` shows them: each rule's
        object with its ``source``, and its hits."""
        rules = self.book.for_run(run).all
        if not rules:
            return []
        states = self.store.rule_states(run["id"])
        out = []
        for eff in rules:
            state = State.of(states.get(eff.key))
            item: dict[str, Any] = {**eff.rule.to_dict(), "source": eff.source,
                                    "hits": state.hits, "last_hit": state.last_hit}
            if eff.rule_id is not None:
                item["id"] = eff.rule_id
            out.append(item)
        return out
