"""What an attempt's job needs to run ``runyard supervise``, and the agent's reports about it.

:func:`prepare` writes the attempt's directory on the shared work directory: ``claim.json``
(the claim answer without the lease) and ``credential`` (mode 0600: the lease and the
credential scoped to this one attempt; never the agent's worker token), and returns the
supervisor's argv for the job script. :func:`report_placement` tells the server the job id
and nodes; :func:`output_tail` reads the end of the job's output for a report.
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

log = logging.getLogger(__name__)

CLAIM_FILE = "claim.json"
CREDENTIAL_FILE = "credential"


def prepare(a: Assignment, root: Path, *, server: str, probe_interval_s: float,
            stop_grace_s: float, python: str = sys.executable) -> list[str]:
    """Write the attempt's files; the ``runyard supervise`` argv of its job."""
    root.mkdir(parents=True, exist_ok=True)
    claim = {"run": a.run, "attempt": {"id": a.attempt_id, "number": a.number},
             "command": a.command, "env": a.env, "config": a.config,
             "probe_interval_s": a.probe_interval_s, "seed": a.seed,
             "lease_expires_at": a.lease_expires_at}
    (root / CLAIM_FILE).write_text(json.dumps(claim, sort_keys=True), "utf-8")
    secret = {"lease": a.lease, "token": getattr(a, "attempt_token", None)}
    script.write_secret(root / CREDENTIAL_FILE, json.dumps(secret))
    return [python, "-m", "runyard", "supervise", "--server", server,
            "--attempt-dir", str(root), "--probe-interval-s", f"{probe_interval_s:g}",
            "--stop-grace-s", f"{stop_grace_s:g}"]


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
