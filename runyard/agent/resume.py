"""The checkpoint a later attempt starts from (docs/lifecycle.md, "Preemption and resume").

Before launching attempt 2 or later, the agent asks the server for the checkpoint of the
newest earlier attempt (``GET /v1/attempts/{id}/resume``), checks its sha256, unpacks a
directory checkpoint, and hands its path to the process as ``RUNYARD_RESUME_FROM`` (with
``RUNYARD_RESUME_STEP``). A run that cannot get it starts from scratch with a warning: a
missing checkpoint must not cost the attempt.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from runyard import errors
from runyard.agent.api import WorkerAPI
from runyard.artifacts.names import validate_artifact_name

log = logging.getLogger(__name__)

BUNDLE_SUFFIX = ".tar.zst"


@dataclass(frozen=True)
class Resume:
    """Where the process finds the checkpoint it resumes from."""

    path: Path
    step: int
    attempt: int

    def env(self) -> dict[str, str]:
        return {"RUNYARD_RESUME_FROM": str(self.path), "RUNYARD_RESUME_STEP": str(self.step)}


class _Hashing:
    """A file writer that hashes what it writes."""

    def __init__(self, fh: Any) -> None:
        self.fh = fh
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.digest.update(data)
        self.fh.write(data)


def fetch(api: WorkerAPI, attempt_id: str, lease: str, root: Path) -> Resume | None:
    """Download the attempt's resume checkpoint under ``root`` (``<attempt dir>/resume``).
    None when there is none; raises :class:`errors.RunyardError` when it cannot be had."""
    root.mkdir(parents=True, exist_ok=True)
    part = root / ".download"
    with open(part, "wb") as fh:
        sink = _Hashing(fh)
        headers = api.download_resume(attempt_id, lease, sink)
    if headers is None:
        part.unlink(missing_ok=True)
        return None
    if sink.digest.hexdigest() != headers.get("x-content-sha256", "").lower():
        part.unlink(missing_ok=True)
        raise errors.ChecksumMismatch("resume checkpoint: the download does not match its "
                                      "sha256")
    name = validate_artifact_name(unquote(headers.get("x-runyard-checkpoint-name", "")))
    base = name.rsplit("/", 1)[-1]
    step = _int(headers.get("x-runyard-checkpoint-step"))
    attempt = _int(headers.get("x-runyard-checkpoint-attempt"))
    if base.endswith(BUNDLE_SUFFIX) and len(base) > len(BUNDLE_SUFFIX):
        from runyard.artifacts import archive

        target = root / base[:-len(BUNDLE_SUFFIX)]
        try:
            archive.extract_archive(part, target)
        finally:
            part.unlink(missing_ok=True)
    else:
        target = root / base
        part.replace(target)
    return Resume(target, step, attempt)


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0
