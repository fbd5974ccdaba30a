"""An attempt's uploads: the checkpoints the SDK registered, as they are registered and at
exit, and the artifact bundle at exit.

Each call goes through the runner's ``deliver(what, fn)``, which retries while the server is
unreachable and turns a 409 into the abandon path; a refused upload (a 4xx other than 409)
is logged and skipped, never fatal to the report.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runyard import errors
from runyard.agent.api import LeaseLost, WorkerAPI
from runyard.agent.assignment import Assignment, AttemptPaths, sha256_file
from runyard.artifacts.names import BUNDLE_KIND, BUNDLE_NAME

log = logging.getLogger(__name__)

#: ``deliver(what, fn)``: call ``fn`` until the server takes it.
Deliver = Callable[[str, Callable[[], Any]], Any]


class Uploads:
    """The uploads of one attempt."""

    def __init__(self, api: WorkerAPI, assignment: Assignment, paths: AttemptPaths,
                 deliver: Deliver) -> None:
        self.api = api
        self.a = assignment
        self.paths = paths
        self._deliver = deliver
        # How far ``checkpoints.jsonl`` was read: each record is uploaded once.
        self._offset = 0
        self._line = 0

    def follow(self, exited: threading.Event, interval_s: float,
               abandoned: Callable[[], bool]) -> None:
        """Upload each checkpoint as the run registers it, until ``exited`` is set (on a
        thread of its own: a large one must not hold up metrics), so that a checkpoint asked
        for reaches the server while the run goes on, and none is lost with the host."""
        seen = 0
        while not exited.wait(interval_s):
            if abandoned():
                return
            try:
                size = self.paths.checkpoints_file.stat().st_size
            except OSError:
                continue
            if size == seen:
                continue
            seen = size
            try:
                self.checkpoints(final=False)
            except (LeaseLost, errors.TransportError):  # abandoned, or a forced stop gave up
                return
            except Exception:  # a bug here must not end the attempt: the exit retries
                log.exception("run %s: checkpoint upload failed", self.a.run_id)

    def file(self, name: str, kind: str, path: Path) -> tuple[str, int]:
        """Upload one file with its sha256; (sha256, size)."""
        sha, size = sha256_file(path)

        def put() -> Any:
            with open(path, "rb") as fh:
                return self.api.put_artifact(self.a.run_id, self.a.attempt_id, self.a.lease,
                                             name, kind, fh, sha)

        self._deliver(f"upload of {name}", put)
        return sha, size

    def artifacts(self) -> None:
        """Bundle ``RUNYARD_ARTIFACT_DIR`` as tar.zst and upload it (nothing when empty)."""
        from runyard.artifacts import archive

        root = self.paths.artifact_dir
        if not root.is_dir() or not any(root.iterdir()):
            return
        bundle = archive.bundle_dir(root, dest_dir=self.paths.root)
        try:
            self.file(BUNDLE_NAME, BUNDLE_KIND, bundle)
        except errors.RunyardError as exc:
            if isinstance(exc, errors.TransportError):
                raise
            log.warning("run %s: the artifact bundle was refused: %s", self.a.run_id,
                        exc.message)
        finally:
            bundle.unlink(missing_ok=True)

    def checkpoints(self, *, final: bool = True) -> int:
        """Upload each checkpoint the SDK registered in ``checkpoints.jsonl`` since the last
        call; only whole lines unless ``final`` (after the exit). Returns how many were
        registered. Not thread-safe: one caller at a time."""
        try:
            with open(self.paths.checkpoints_file, "rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except OSError:
            return 0
        if not final:
            data = data[:data.rfind(b"\n") + 1]  # a line being written is left for later
        done = 0
        for raw in data.splitlines(keepends=True):
            self._offset += len(raw)
            self._line += 1
            if raw.strip() and self._one(raw.decode("utf-8", errors="replace"), self._line):
                done += 1
        return done

    def _one(self, line: str, n: int) -> bool:
        """Upload one record's checkpoint (when complete) and register it."""
        from runyard.artifacts import archive

        try:
            rec = json.loads(line)
            path = Path(rec["path"])
        except (ValueError, KeyError, TypeError):
            log.warning("%s line %d: not a checkpoint record", self.paths.checkpoints_file, n)
            return False
        step = rec.get("step") if isinstance(rec.get("step"), int) else 0
        metrics = rec.get("metrics") if isinstance(rec.get("metrics"), dict) else {}
        if not path.is_absolute():
            path = self.paths.checkpoint_dir / path
        name = f"checkpoints/{path.name}" + (".tar.zst" if path.is_dir() else "")
        sha: str | None = None
        size: int | None = None
        status = "incomplete"
        if rec.get("status") == "complete" and path.exists():
            tmp = archive.bundle_dir(path, dest_dir=self.paths.root) if path.is_dir() \
                else None
            try:
                sha, size = self.file(name, "checkpoint", tmp or path)
                status = "complete"
            except errors.RunyardError as exc:
                if isinstance(exc, errors.TransportError):
                    raise
                log.warning("run %s: checkpoint %s refused: %s", self.a.run_id, name,
                            exc.message)
            finally:
                if tmp is not None:
                    tmp.unlink(missing_ok=True)
        try:
            self._deliver(f"checkpoint {name}", functools.partial(
                self.api.checkpoint, self.a.attempt_id, self.a.lease, step=step,
                status=status, name=name, sha256=sha, size=size, metrics=metrics))
        except errors.RunyardError as exc:
            if isinstance(exc, errors.TransportError):
                raise
            log.warning("run %s: checkpoint record %s refused: %s", self.a.run_id, name,
                        exc.message)
            return False
        return True
