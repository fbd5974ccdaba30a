"""The checkpoint request file of one attempt (``RUNYARD_CHECKPOINT_REQUEST_FILE``,
docs/progress-protocol.md).

While the server's heartbeat answers name a pending request, the file is there, holding
``{"requested_at": "<the request's time>"}``. It goes away as soon as the loop registers a
checkpoint (a new line in ``checkpoints.jsonl``), without waiting for the upload that tells
the server: a large checkpoint may take minutes to upload, and a loop watching the file must
not save again meanwhile. The request it answered is remembered, so the heartbeats that still
name it (until the server has the checkpoint) do not bring the file back. When the answers
stop naming a request (answered, or the attempt moved on), the file goes too.

The heartbeat thread calls :meth:`RequestFile.heartbeat`, the supervisor :meth:`probe`.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from pathlib import Path

log = logging.getLogger(__name__)


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


class RequestFile:
    """Creates and removes the request file from heartbeat answers and the checkpoints file."""

    def __init__(self, path: Path, checkpoints_file: Path) -> None:
        self.path = path
        self.checkpoints_file = checkpoints_file
        self._lock = threading.Lock()
        self._shown: str | None = None  # the request the file names now
        self._answered: str | None = None
        self._size_when_shown = 0
        self._closed = False

    def heartbeat(self, requested_at: str | None) -> None:
        """A heartbeat answer: the pending request's time, or None when none is pending."""
        with self._lock:
            if self._closed or requested_at is None or requested_at == self._answered:
                if self._shown is not None:
                    self._remove()
                return
            if requested_at != self._shown:
                self._size_when_shown = _size(self.checkpoints_file)
                if self._write(requested_at):
                    self._shown = requested_at
                    log.info("checkpoint requested (%s): %s", requested_at, self.path)

    def probe(self) -> bool:
        """If the loop registered a checkpoint since the file appeared, it answered the
        request: remove the file. True when it did."""
        with self._lock:
            if self._shown is None or _size(self.checkpoints_file) <= self._size_when_shown:
                return False
            self._answered = self._shown
            self._remove()
            return True

    def close(self) -> None:
        """The process exited: no file left behind, and none made again."""
        with self._lock:
            self._closed = True
            self._remove()

    def _write(self, requested_at: str) -> bool:
        # Atomically (a reader sees the whole file or none), and readable by a run started
        # as another user (mkstemp alone makes it 0600).
        data = json.dumps({"requested_at": requested_at}).encode()
        try:
            fd, tmp = tempfile.mkstemp(prefix=".runyard-", suffix=".tmp", dir=self.path.parent)
            try:
                os.fchmod(fd, 0o644)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:  # the next heartbeat tries again
            log.warning("cannot create the checkpoint request file %s: %s", self.path, exc)
            return False
        return True

    def _remove(self) -> None:
        self._shown = None
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot remove the checkpoint request file %s: %s", self.path, exc)
