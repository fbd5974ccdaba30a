"""What a Slurm job state means for the attempt it carries (docs/executors.md).

``runyard supervise`` inside the job reports the attempt's end itself (the training process's
exit). The agent reports only what the supervisor could not: the job ended without a report
(Slurm killed it, the node died, someone ran ``scancel``) or it vanished. :func:`verdict`
says which termination reason that is; the server's retry policy then decides (``lost`` and
``preempted`` requeue, ``timeout`` and ``oom`` are the run's own doing).
"""

from __future__ import annotations

from dataclasses import dataclass

from runyard.models import Reason

#: States of a job that is still waiting or running (``squeue %T`` spelling).
ACTIVE = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED",
                    "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING", "SIGNALING",
                    "STAGE_OUT", "RESV_DEL_HOLD", "STOPPED"})

#: Terminal states and the reason an unreported attempt ends with.
_TERMINAL: dict[str, tuple[Reason, str]] = {
    "COMPLETED": (Reason.LOST, "the job ended but its supervisor never reported"),
    "FAILED": (Reason.SETUP_ERROR, "the job failed before its supervisor reported (did "
                                   "`runyard supervise` start on the node?)"),
    "CANCELLED": (Reason.STOPPED, "the job was cancelled in Slurm (scancel)"),
    "TIMEOUT": (Reason.TIMEOUT, "the job reached its Slurm time limit"),
    "DEADLINE": (Reason.TIMEOUT, "the job reached its Slurm deadline"),
    "OUT_OF_MEMORY": (Reason.OOM, "the job exceeded its memory (Slurm OUT_OF_MEMORY)"),
    "NODE_FAIL": (Reason.LOST, "a node of the job failed (Slurm NODE_FAIL)"),
    "BOOT_FAIL": (Reason.LOST, "a node of the job failed to boot (Slurm BOOT_FAIL)"),
    "PREEMPTED": (Reason.PREEMPTED, "the job was preempted by Slurm"),
    "REVOKED": (Reason.LOST, "the job was revoked (federation)"),
    "SPECIAL_EXIT": (Reason.LOST, "the job ended in SPECIAL_EXIT"),
}

#: What an attempt ends with when Slurm no longer knows its job at all.
VANISHED = (Reason.LOST, "the job vanished from Slurm (not in squeue, scontrol or sacct)")


@dataclass(frozen=True)
class Verdict:
    """``active``: the job still runs or waits; otherwise ``reason`` and ``message`` are what
    the attempt is reported with if its supervisor has not reported."""

    active: bool
    reason: Reason | None = None
    message: str = ""


def normalize(state: str) -> str:
    """``CANCELLED by 0`` (sacct) -> ``CANCELLED``; ``cancelled+`` -> ``CANCELLED``."""
    word = state.strip().split(" ", 1)[0] if state.strip() else ""
    return word.rstrip("+*").upper()


def verdict(state: str | None) -> Verdict:
    """The verdict for a job in ``state`` (None: Slurm does not know the job)."""
    if state is None:
        return Verdict(False, *VANISHED)
    s = normalize(state)
    if s in ACTIVE:
        return Verdict(True)
    if s in _TERMINAL:
        reason, message = _TERMINAL[s]
        return Verdict(False, reason, message)
    # A state this release does not know: treat it as gone, saying which.
    return Verdict(False, Reason.LOST, f"the job ended in an unknown Slurm state {s!r}")


def exit_code(text: str) -> int | None:
    """The exit status of Slurm's ``ExitCode`` (``1:0`` -> 1; ``0:15``, a signal, -> None)."""
    code, _, sig = text.partition(":")
    if not code.isdigit():
        return None
    if sig.isdigit() and int(sig) != 0:
        return None
    return int(code)
