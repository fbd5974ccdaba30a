"""The report an attempt's exit gets (runyard.agent.verdict): each row of the decision table."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from runyard.agent.process import ExitResult
from runyard.agent.verdict import SIGNAL_SLACK_S, judge, signalled_before


def ended(code: int | None = 0, sig: int | None = None, *, by_request: bool = False,
          setup_error: str | None = None) -> ExitResult:
    return ExitResult(exit_code=code, signal=sig, stopped_by_request=by_request,
                      killed_after_grace=False, stderr_tail=["last line"],
                      setup_error=setup_error, duration_s=1.23456)


def verdict_of(result: ExitResult, **kw: Any) -> tuple[str, str | None]:
    args: dict[str, Any] = {"host_id": "h1", "cwd": Path("/runs/x"), "shutdown": False,
                            "stop_ordered": False, "intent": None,
                            "report_on_shutdown": True, **kw}
    v = judge(result, **args)
    return v.verb, v.reason


@pytest.mark.parametrize(("result", "kw", "expected"), [
    (ended(0), {}, ("complete", None)),
    (ended(3), {}, ("fail", "user_error")),
    (ended(None, signal.SIGKILL), {}, ("fail", "user_error")),
    (ended(None, setup_error="no such file"), {}, ("fail", "setup_error")),
    # The server's stop: whatever the exit code, the run was stopped.
    (ended(1, by_request=True), {"stop_ordered": True, "intent": "preempt"},
     ("fail", "stopped")),
    # The agent stopping ended the process: requeued as a worker shutdown ...
    (ended(None, signal.SIGTERM, by_request=True), {"shutdown": True},
     ("fail", "worker_shutdown")),
    # ... but one that had already finished on its own is reported as it ended.
    (ended(0), {"shutdown": True}, ("complete", None)),
    # A supervisor inside a Slurm job leaves a kill from outside to its executor.
    (ended(None, signal.SIGTERM), {"report_on_shutdown": False}, ("leave", None)),
    (ended(None, signal.SIGTERM), {"report_on_shutdown": False, "shutdown": True},
     ("leave", None)),
    # ... except a stop the server ordered, which it reports itself.
    (ended(None, signal.SIGTERM, by_request=True),
     {"report_on_shutdown": False, "stop_ordered": True}, ("fail", "stopped")),
    # ... but one that had already finished on its own is reported as it ended.
    (ended(0), {"report_on_shutdown": False, "shutdown": True}, ("complete", None)),
    # The signal came first (Slurm's end of the job reaches every process): whatever the
    # exit, even a clean one after saving a checkpoint, the executor says why.
    (ended(0), {"report_on_shutdown": False, "shutdown": True, "signalled": True},
     ("leave", None)),
    (ended(0), {"report_on_shutdown": False, "signalled": True}, ("leave", None)),
    (ended(0, by_request=True), {"report_on_shutdown": False, "shutdown": True},
     ("leave", None)),
    (ended(1), {"report_on_shutdown": False, "signalled": True}, ("leave", None)),
    # A local agent's own stop is unchanged by when the signal came.
    (ended(0), {"shutdown": True, "signalled": True}, ("complete", None)),
    (ended(0, by_request=True), {"shutdown": True, "signalled": True},
     ("fail", "worker_shutdown")),
])
def test_each_exit_gets_its_report(result: ExitResult, kw: dict[str, Any],
                                   expected: tuple[str, str | None]) -> None:
    assert verdict_of(result, **kw) == expected


def test_the_details_carry_where_and_how_it_ended() -> None:
    v = judge(ended(None, signal.SIGTERM, by_request=True), host_id="h1", cwd=Path("/w"),
              shutdown=False, stop_ordered=True, intent="preempt", report_on_shutdown=True)
    assert v.details == {"host": "h1", "workdir": "/w", "message": v.details["message"],
                         "duration_s": 1.235, "signal": "SIGTERM", "intent": "preempt"}
    assert "SIGTERM" in v.details["message"]
    assert v.stderr_tail == ["last line"]


def test_a_kill_left_to_the_executor_says_what_stopped_it() -> None:
    outside = judge(ended(None, signal.SIGTERM), host_id="h", cwd=None, shutdown=True,
                    stop_ordered=False, intent=None, report_on_shutdown=False)
    killed = judge(ended(None, signal.SIGKILL), host_id="h", cwd=None, shutdown=False,
                   stop_ordered=False, intent=None, report_on_shutdown=False)
    saved = judge(ended(0), host_id="h", cwd=None, shutdown=False, stop_ordered=False,
                  intent=None, report_on_shutdown=False, signalled=True)
    assert (outside.left_why, killed.left_why, saved.left_why) == ("signal", "killed", "signal")
    assert saved.exit_code == 0


@pytest.mark.parametrize(("signal_at", "exited_at", "expected"), [
    (None, 10.0, False),  # no signal
    (9.0, 10.0, True),  # before the end
    (10.0 + SIGNAL_SLACK_S, 10.0, True),  # with it: the child got its copy first
    (10.0 + SIGNAL_SLACK_S + 0.01, 10.0, False),  # after an end of its own
])
def test_a_signal_counts_when_it_came_before_the_end(signal_at: float | None, exited_at: float,
                                                     expected: bool) -> None:
    assert signalled_before(signal_at, exited_at) is expected
