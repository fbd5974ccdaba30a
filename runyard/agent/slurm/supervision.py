"""What an attempt's job needs to run ``runyard supervise``, and the agent's reports about it.

:func:`prepare` writes the attempt's directory on the shared work directory: ``spec.json``
(the claim's answer without the credential, :meth:`Assignment.spec`, with the launch prefix
and the lease's length) and ``attempt.token`` (mode 0600: the credential scoped to this one
attempt; never the agent's worker token), and returns the supervisor's argv for the job
script. :func:`report_placement` tells the server the job id and nodes; :func:`output_tail`
reads the end of the job's output for a report; :func:`left_mark` reads the mark a
supervisor leaves when a signal stopped or killed its run and it left the report to the
agent.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runyard import errors
from runyard.agent.api import WorkerAPI
from runyard.agent.assignment import Assignment
from runyard.agent.slurm import script
from runyard.agent.supervise import LEFT_FILE

log = logging.getLogger(__name__)

SPEC_FILE = "spec.json"
TOKEN_FILE = "attempt.token"


def prepare(a: Assignment, root: Path, *, server: str, work_dir: Path, probe_interval_s: float,
            stop_grace_s: float, launch_prefix: Sequence[str] = (),
            python: str = sys.executable) -> list[str]:
    """Write the attempt's files; the supervisor's argv for its job (``runyard supervise``
    as ``python -m runyard.agent.supervise``, the light start of :mod:`runyard.agent.supervise`).

    ``--on-signal leave``: a SIGTERM that reaches the supervisor from Slurm (an outside
    ``scancel``, the time-limit warning, a preemption) stops the run within its grace but
    reports nothing; the agent reports it with the reason Slurm's job state means."""
    if not a.attempt_token:
        raise errors.ValidationError("the server gave no attempt credential (attempt_token) "
                                     "with the claim; upgrade the server", field="attempt_token")
    root.mkdir(parents=True, exist_ok=True)
    spec = a.spec(launch_prefix)
    spec["lease_s"] = a.stale_after_s  # the spec is read later, when the job starts
    (root / SPEC_FILE).write_text(json.dumps(spec, sort_keys=True), "utf-8")
    script.write_secret(root / TOKEN_FILE, a.attempt_token)
    return [python, "-m", "runyard.agent.supervise", "--server", server,
            "--spec", str(root / SPEC_FILE), "--token-file", str(root / TOKEN_FILE),
            "--work-dir", str(work_dir), "--probe-interval-s", f"{probe_interval_s:g}",
            "--stop-grace-s", f"{stop_grace_s:g}", "--on-signal", "leave"]


def left_mark(root: Path | None) -> dict[str, Any] | None:
    """What the attempt's supervisor wrote when it left its report to the agent (a signal
    stopped it, or killed the training process), or None."""
    if root is None:
        return None
    try:
        data = json.loads((root / LEFT_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def report_placement(api: WorkerAPI, attempt_id: str, lease: str, external_id: str,
                     nodes: Sequence[str]) -> bool:
    """Record the job id and nodes on the attempt; False when the server could not take it
    now (tried again on the next reconcile)."""
    placement: Any = getattr(api, "placement", None)
    if placement is None:
        return True  # a server API without placements: nothing to record
    try:
        placement(attempt_id, lease, external_id=external_id, nodes=list(nodes) or None)
        return True
    except errors.LeaseConflict:
        return True  # the attempt ended meanwhile: nothing more to place
    except errors.RunyardError as exc:
        log.warning("placement of attempt %s not recorded (%s)", attempt_id, exc.message)
        return False


def output_tail(root: Path | None, job_id: str | None, lines: int) -> list[str]:
    """The last ``lines`` lines of the job's output file (``slurm-<job>.out``)."""
    if root is None or not job_id:
        return []
    path = root / f"slurm-{job_id}.out"
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(fh.tell() - 16384, 0))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [line[:2000] for line in text.splitlines()[-lines:]]
