"""What a rule does when it fires (docs/rules.md): always an event with the evidence, then
``notify:<channel>``, ``no_retry``, ``stop``, ``fail`` and ``checkpoint``.

Everything happens in the transaction that records the hit, with the run locked: the hit,
its event and its consequences (the outbox row of a notification included) commit together
or not at all.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from runyard import checkpoint_requests, defaults, models
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

def fire(tx: Transaction, queue: Queue, run: Row, eff: Effective, state: State,
         evidence: Mapping[str, Any], attempt: int, now: float) -> None:
    """Record the hit of ``eff`` on the locked ``run`` (``state`` is updated: the caller
    writes it) and do its actions."""
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
    # The checkpoint is asked for before a stop of the same hit: a stopping run's loop is
    # not asked for one (it saves on stop, if it does, within its grace).
    if rule.has("checkpoint") and status is models.Status.RUNNING:
        checkpoint_requests.request(tx, run, now=now, actor=SYSTEM, details=why)
    if status.is_active:
        if rule.has("fail"):
            queue.stop_in(tx, run["id"], grace_s=STOP_GRACE_S, actor=SYSTEM, intent="fail",
                          details=why)
        elif rule.has("stop"):
            queue.stop_in(tx, run["id"], grace_s=STOP_GRACE_S, actor=SYSTEM, intent="rule",
                          details=why)


