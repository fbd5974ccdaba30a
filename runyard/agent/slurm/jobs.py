"""The agent's record of the jobs it submitted, kept on disk so a restarted agent takes them
over instead of submitting anything twice (docs/executors.md, "Reattaching").

One mode-0600 JSON file per attempt under ``<work-dir>/.slurm-jobs/`` holds the attempt id,
the run, the lease (the agent reports for the attempt when its job ends without a report)
and the job id. It is written *before* ``sbatch`` runs (without a job id), then again with
it: a restart between the two finds the job by its name, ``runyard-<attempt id>``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from runyard.agent.slurm import script

log = logging.getLogger(__name__)

DIR_NAME = ".slurm-jobs"


@dataclass
class JobRecord:
    attempt_id: str
    run_id: str
    number: int
    lease: str
    root: str
    job_id: str | None = None
    stale_after_s: float = 120.0
    #: The job has a time-limit warning (``--signal=B:TERM@S``).
    warned: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobRecord:
        return cls(attempt_id=str(data["attempt_id"]), run_id=str(data["run_id"]),
                   number=int(data["number"]), lease=str(data["lease"]), root=str(data["root"]),
                   job_id=str(data["job_id"]) if data.get("job_id") else None,
                   stale_after_s=float(data.get("stale_after_s") or 120.0),
                   warned=bool(data.get("warned")))


class JobBook:
    """The records of one work directory."""

    def __init__(self, work_dir: Path) -> None:
        self.dir = work_dir / DIR_NAME

    def _path(self, attempt_id: str) -> Path:
        # Attempt ids are the server's; keep the file name plain whatever they hold.
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in attempt_id)
        return self.dir / f"{safe}.json"

    def save(self, rec: JobRecord) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        script.write_secret(self._path(rec.attempt_id), json.dumps(asdict(rec)))

    def forget(self, attempt_id: str) -> None:
        try:
            os.unlink(self._path(attempt_id))
        except FileNotFoundError:
            pass

    def all(self) -> list[JobRecord]:
        out: list[JobRecord] = []
        if not self.dir.is_dir():
            return out
        for path in sorted(self.dir.glob("*.json")):
            try:
                out.append(JobRecord.from_dict(json.loads(path.read_text("utf-8"))))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring unreadable job record %s: %s", path, exc)
        return out
