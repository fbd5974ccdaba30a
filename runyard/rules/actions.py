"""What a rule does when it fires (docs/rules.md): always an event with the evidence, then
``notify:<channel>``, ``no_retry``, ``stop``, ``fail`` and ``checkpoint``.

Everything but ``checkpoint`` happens in the transaction that records the hit, with the run
locked: the hit, its event and its consequences commit together or not at all. Asking the
training loop for a checkpoint goes through the queue after the commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from runyard import defaults, models
from runyard.queue import SYSTEM, Queue
from runyard.rules import dispatch
from runyard.rules.book import Effective
from runyard.rules.conditions import State
from runyard.store.base import Row, Transaction

log = logging.getLogger(__name__)

#: The kind of a hit's event.
EVENT_KIND = "rule"
#: Seconds a stopping rule gives the process, as a user's stop does by default.
STOP_GRACE_S = defaults.STOP_GRACE_S

After = Callable[[], None]


def fire(tx: Transaction, queue: Queue, run: Row, eff: Effective, state: State,
         evidence: Mapping[str, Any], attempt: int, now: float) -> list[After]:
    """Record the hit of ``eff`` on the locked ``run`` (``state`` is updated: the caller
    writes it) and do its actions; returns what must wait for the commit."""
    rule = eff.rule
    state.fired = True
    state.hits += 1
    state.last_hit_at = now
    details: dict[str, Any] = {"rule": rule.name, "source": eff.source, "when": rule.when,
                               **evidence, "attempt": attempt, "actions": list(rule.then)}
    if eff.rule_id is not None:
        details["rule_id"] = eff.rule_id
    channels = rule.notify
    if channels:
        details["notify"] = channels
    state.last_hit = {**details, "at": now}
    status = models.Status(run["status"])
    seq = tx.append_event(run["id"], kind=EVENT_KIND, status=status.value, actor=SYSTEM,
                          attempt=attempt, at=now, details=details)
    tx.count_rule_hits(run["id"], 1)
    event = {"run_id": run["id"], "seq": seq, "kind": EVENT_KIND, "status": status.value,
             "attempt": attempt, "at": now, "details": details}
    for channel in channels:
        dispatch.notify(tx, run, channel, event)
    if rule.has("no_retry"):
        tx.update_run(run["id"], {"no_retry": True})
    why = {"rule": rule.name}
    if status.is_active:
        if rule.has("fail"):
            queue.stop_in(tx, run["id"], grace_s=STOP_GRACE_S, actor=SYSTEM, intent="fail",
                          details=why)
        elif rule.has("stop"):
            queue.stop_in(tx, run["id"], grace_s=STOP_GRACE_S, actor=SYSTEM, intent="rule",
                          details=why)
    after: list[After] = []
    if rule.has("checkpoint") and status.is_active:
        after.append(lambda: _request_checkpoint(queue, run["id"], rule.name))
    return after


def _request_checkpoint(queue: Queue, run_id: str, rule: str) -> None:
    """Ask the run's training loop for a checkpoint, where the queue can (its heartbeat
    answer carries the request); the hit event records the ask either way."""
    request = getattr(queue, "request_checkpoint", None)
    if request is None:
        log.info("rule %s asked run %s for a checkpoint; this server cannot pass it on",
                 rule, run_id)
        return
    try:
        request(run_id, actor=SYSTEM)
    except Exception:  # the run may have ended meanwhile; the hit is recorded already
        log.warning("rule %s: checkpoint request for run %s failed", rule, run_id,
                    exc_info=True)
