"""An on-disk, append-only queue of requests that could not reach the server yet.

``ops.jsonl`` holds one request a line, in the order the run made them; ``cursor`` holds the
byte offset of the first line not yet acknowledged by the server. Replay reads from the
cursor and advances it after each acknowledged request, so a crash between the two resends
at most one request -- and every request the HTTP sink spools is idempotent on the server
(metric points are upserts by attempt, tag and step), so that one resend duplicates nothing.

Only the SDK's background thread touches a spool, so there is no locking.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

OPS_FILE = "ops.jsonl"
CURSOR_FILE = "cursor"
META_FILE = "run.json"


class Spool:
    """The spool of one run, in ``directory`` (created on first use)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ops_path = directory / OPS_FILE
        self.cursor_path = directory / CURSOR_FILE
        self._pending = self._compute_pending()

    def _compute_pending(self) -> int:
        try:
            size = self.ops_path.stat().st_size
        except OSError:
            return 0
        return 1 if size > self.cursor() else 0

    @property
    def pending(self) -> bool:
        """Whether some spooled request is not acknowledged yet."""
        return self._pending > 0

    def write_meta(self, meta: dict[str, Any]) -> None:
        """What ``runyard sync`` needs to finish the replay later (server, run, lease)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / META_FILE
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds the lease
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(meta, fh)

    def read_meta(self) -> dict[str, Any] | None:
        try:
            data = json.loads((self.directory / META_FILE).read_text("utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def append(self, op: dict[str, Any]) -> None:
        """Add one request at the end (written and flushed before returning)."""
        self.append_raw(json.dumps(op, separators=(",", ":"), allow_nan=False,
                                   default=str).encode())

    def append_raw(self, line: bytes) -> None:
        """Add one request already encoded as a JSON object (no newline inside)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.ops_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "ab") as fh:
            fh.write(line + b"\n")
        self._pending += 1

    def cursor(self) -> int:
        try:
            return int(self.cursor_path.read_text("ascii").strip() or 0)
        except (OSError, ValueError):
            return 0

    def _set_cursor(self, offset: int) -> None:
        tmp = self.cursor_path.with_suffix(".tmp")
        tmp.write_text(str(offset), "ascii")
        os.replace(tmp, self.cursor_path)

    def pending_ops(self) -> Iterator[tuple[dict[str, Any], int]]:
        """``(op, end_offset)`` for each unacknowledged request, oldest first.

        A trailing partial line (a crash mid-append) is left for later; a corrupt line is
        skipped so that one bad line cannot block the rest.
        """
        start = self.cursor()
        try:
            fh = open(self.ops_path, "rb")  # closed below
        except OSError:
            return
        with fh:
            fh.seek(start)
            offset = start
            for raw in fh:
                if not raw.endswith(b"\n"):
                    return
                offset += len(raw)
                try:
                    op = json.loads(raw)
                except ValueError:
                    self._set_cursor(offset)
                    continue
                if isinstance(op, dict):
                    yield op, offset

    def ack(self, end_offset: int) -> None:
        """The request ending at ``end_offset`` reached the server."""
        self._set_cursor(end_offset)

    def finish_replay(self) -> None:
        """Everything was acknowledged: start the files afresh (keeps the metadata)."""
        for path in (self.ops_path, self.cursor_path):
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        self._pending = 0

    def remove(self) -> None:
        """Delete the spool directory (the run ended and everything was sent)."""
        shutil.rmtree(self.directory, ignore_errors=True)
        self._pending = 0
