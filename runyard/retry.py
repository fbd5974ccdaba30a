"""The retry policy: given why an attempt ended, does the run go back to the queue?

Pure, so every branch is tested directly (docs/lifecycle.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runyard.models import SYSTEM_REASONS, Reason, Status


@dataclass(frozen=True)
class Decision:
    status: Status
    requeue: bool
    why: str
    counts_as_error_restart: bool = False


def decide(run: Mapping[str, Any], reason: Reason, exit_code: int | None,
           stop_acknowledged: bool = False) -> Decision:
    """What happens to ``run`` after its current attempt ended with ``reason``.

    A local run (``executor: "local"``, started by hand) is never requeued: no agent could
    run it again, it has no command. What would have requeued it fails it instead.
    """
    decision = _decide(run, reason, exit_code, stop_acknowledged)
    if decision.requeue and run.get("executor") == "local":
        return Decision(Status.FAILED, False,
                        f"{decision.why}; but a local run is not requeued (only the process "
                        "that started it can run it)")
    return decision


def _decide(run: Mapping[str, Any], reason: Reason, exit_code: int | None,
            stop_acknowledged: bool = False) -> Decision:
    """What happens to ``run`` after its current attempt ended with ``reason``.

    ``run`` needs ``attempt``, ``budget_start``, ``max_attempts``, ``max_restarts_on_errors``,
    ``error_restarts``, ``retry_on_exit_codes``, ``no_retry`` and ``stop_intent``.
    ``stop_acknowledged``: the worker was told of the stop (a heartbeat answer carried it).
    """
    intent = run.get("stop_intent")
    used = int(run["attempt"]) - int(run.get("budget_start") or 0)
    budget_left = used < int(run["max_attempts"])

    if intent == "restart":
        return Decision(Status.QUEUED, True, "restart requested")
    if intent in ("stop", "cancel", "preempt", "rule", "fail") and reason is Reason.COMPLETED \
            and not stop_acknowledged:
        return Decision(Status.COMPLETED, False, "completed before the stop reached it")
    if intent in ("stop", "cancel"):
        return Decision(Status.STOPPED, False, "stopped by request")
    if intent == "preempt":
        # Whatever the exit, the work is not done: it stopped because we asked it to.
        return _system(run, budget_left, Reason.PREEMPTED)
    if intent == "fail":
        return Decision(Status.FAILED, False, "failed by a rule")
    if intent == "rule" or reason is Reason.RULE:
        return Decision(Status.STOPPED, False, "stopped by a rule")
    if reason is Reason.STOPPED:
        return Decision(Status.STOPPED, False, "stopped")
    if reason is Reason.COMPLETED:
        return Decision(Status.COMPLETED, False, "completed")

    if run.get("no_retry"):
        return Decision(Status.FAILED, False, "retries forbidden by a rule")
    if reason in SYSTEM_REASONS:
        return _system(run, budget_left, reason)
    # user_error, setup_error, timeout, oom: the run's own doing, retried only by its policy
    if not budget_left:
        return Decision(Status.FAILED, False, f"max_attempts ({run['max_attempts']}) reached")
    codes = run.get("retry_on_exit_codes") or []
    if exit_code is not None and exit_code in codes:
        return Decision(Status.QUEUED, True, f"exit code {exit_code} is in retry_on_exit_codes")
    if int(run.get("error_restarts") or 0) < int(run.get("max_restarts_on_errors") or 0):
        return Decision(Status.QUEUED, True, "max_restarts_on_errors allows a retry",
                        counts_as_error_restart=True)
    return Decision(Status.FAILED, False, f"{reason.value}: no retry policy applies")


def _system(run: Mapping[str, Any], budget_left: bool, reason: Reason) -> Decision:
    if run.get("no_retry"):
        return Decision(Status.FAILED, False, "retries forbidden by a rule")
    if budget_left:
        return Decision(Status.QUEUED, True, f"{reason.value}: requeued automatically")
    return Decision(Status.FAILED, False,
                    f"{reason.value}: max_attempts ({run['max_attempts']}) reached")
