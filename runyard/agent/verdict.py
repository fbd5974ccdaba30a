"""How an attempt's exit is reported (docs/lifecycle.md): the one decision table from what
the process did and who stopped it to ``complete`` or ``fail`` with a reason, or to no report
at all where whoever runs the supervisor knows better.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runyard import models
from runyard.agent import process

#: Seconds after the process's end that a signal from outside still counts as what ended it:
#: Slurm signals every process of a job at once, the supervisor possibly a little after its
#: child, which may already have exited on it.
SIGNAL_SLACK_S = 1.0


def signalled_before(signal_at: float | None, exited_at: float) -> bool:
    """Whether a stop signal that reached the supervisor at ``signal_at`` (monotonic; None:
    none did) came before the process's end at ``exited_at``, or with it."""
    return signal_at is not None and signal_at <= exited_at + SIGNAL_SLACK_S


@dataclass(frozen=True)
class Verdict:
    """``verb`` is ``complete``, ``fail`` or ``leave`` (no report: the executor reports)."""

    verb: str
    reason: str | None = None
    exit_code: int | None = None
    stderr_tail: Sequence[str] = ()
    details: dict[str, Any] = field(default_factory=dict)
    #: For ``leave``: what stopped the process (``signal``: a stop from outside the agent;
    #: ``killed``: a signal the agent did not send).
    left_why: str | None = None


def judge(result: process.ExitResult, *, host_id: str, cwd: Path | None, shutdown: bool,
          stop_ordered: bool, intent: str | None, report_on_shutdown: bool,
          signalled: bool = False) -> Verdict:
    """The report for ``result``. ``shutdown``: the agent (or supervisor) is stopping;
    ``stop_ordered``: the server ordered a stop, with ``intent``; ``report_on_shutdown``:
    False where the executor reports a process stopped from outside; ``signalled``: a stop
    signal reached the supervisor before the process ended (:func:`signalled_before`)."""
    details: dict[str, Any] = {"host": host_id, "workdir": str(cwd), "message": result.message,
                               "duration_s": round(result.duration_s, 3)}
    if result.signal is not None:
        details["signal"] = process.signal_name(result.signal)
    if result.setup_error is not None:
        return Verdict("fail", models.Reason.SETUP_ERROR.value,
                       details={**details, "error": result.setup_error})
    failure: dict[str, Any] = {"exit_code": result.exit_code, "stderr_tail": result.stderr_tail}
    outside = signalled or (shutdown and result.stopped_by_request)
    killed = not result.succeeded and (shutdown or result.signal is not None)
    if not report_on_shutdown and not stop_ordered and (outside or killed):
        # A stop from outside, or a process killed by a signal it did not send: a Slurm
        # agent reads why its job ended (scancel, a time limit, an out-of-memory kill, a
        # preemption) and reports it. Whatever the exit code once the stop came first: Slurm
        # signals the whole job, and a trainer that saves a checkpoint and exits 0 on its
        # SIGTERM was preempted (or timed out), not done.
        return Verdict("leave", details=details,
                       left_why="signal" if outside or shutdown else "killed", **failure)
    if shutdown and result.stopped_by_request:
        # Only a process the agent's stop ended: one that had already exited on its own (its
        # training done, the agent still uploading) is reported as it ended, so a finished
        # run is not requeued and trained again.
        return Verdict("fail", models.Reason.WORKER_SHUTDOWN.value, details=details, **failure)
    if result.exit_code == 0:
        return Verdict("complete", exit_code=0, details=details)
    if stop_ordered or result.stopped_by_request:
        return Verdict("fail", models.Reason.STOPPED.value,
                       details={**details, "intent": intent}, **failure)
    return Verdict("fail", models.Reason.USER_ERROR.value, details=details, **failure)
