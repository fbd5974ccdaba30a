"""Training logs: chunks of each attempt's stdout and stderr (:class:`LogsMixin`, part of
:class:`runyard.store.sql.SQLStore`).

Log offsets are **byte** offsets into the UTF-8 encoding of a stream, so an agent can resume
with the size of what it already sent; reads never split a character.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from runyard import errors
from runyard.store.access import Access
from runyard.store.schema import log_chunks, runs
from runyard.store.values import check_attempt, check_choice, check_int, is_number

LOG_STREAMS = ("stdout", "stderr")
#: Chunks read from the database per round trip while assembling a log read.
_LOG_BATCH = 64


class LogsMixin(Access):
    """Log methods of the store."""

    def add_log_chunks(self, run_id: str, attempt: int, chunks: Sequence[Mapping[str, Any]],
                       at: float) -> int:
        """Store ``{stream, offset, data}`` chunks; a chunk already stored at its
        (attempt, stream, offset) is kept as is. Returns how many chunks were new.

        NUL characters (which PostgreSQL text refuses) become U+001A SUBSTITUTE, one byte
        like NUL, so byte offsets stay right.
        """
        check_attempt(attempt)
        if not is_number(at):
            raise errors.ValidationError("at: expected UNIX seconds", field="at")
        if isinstance(chunks, (str, bytes)) or not isinstance(chunks, Sequence):
            raise errors.ValidationError("chunks: expected a list", field="chunks")
        rows = []
        for i, ch in enumerate(chunks):
            if not isinstance(ch, Mapping):
                raise errors.ValidationError(f"chunks[{i}]: expected an object",
                                             field=f"chunks[{i}]")
            stream = check_choice(ch.get("stream"), f"chunks[{i}].stream", LOG_STREAMS)
            offset = check_int(ch.get("offset"), f"chunks[{i}].offset")
            data = ch.get("data")
            if not isinstance(data, str) or not data:
                raise errors.ValidationError(f"chunks[{i}].data: expected a non-empty string",
                                             field=f"chunks[{i}].data")
            rows.append({"run_id": run_id, "attempt": attempt, "stream": stream,
                         "offset": offset, "data": data.replace("\x00", "\x1a"),
                         "at": float(at)})
        if not rows:
            return 0
        stmt = self.ops.insert(log_chunks).on_conflict_do_nothing(
            index_elements=["run_id", "attempt", "stream", "offset"])
        with self._write() as conn:
            self._need_run(conn, run_id)
            return sum(max(conn.execute(stmt, r).rowcount, 0) for r in rows)

    def read_logs(self, run_id: str, *, attempt: int | None = None, stream: str = "stdout",
                  offset: int = 0, limit_bytes: int = 65536,
                  tail: int | None = None) -> dict[str, Any]:
        """Up to ``limit_bytes`` of consecutive text from byte ``offset`` of a stream:
        ``{data, offset, next_offset, attempt}``. ``attempt`` None means the run's latest. The
        read stops at a gap (a chunk not received yet) and never splits a character; pass
        ``next_offset`` back to continue. With ``tail``, the last ``tail`` lines stored
        instead (at most ``limit_bytes`` of them, back from the last chunk to a gap), and
        ``offset`` says where they start.
        """
        check_choice(stream, "stream", LOG_STREAMS)
        pos = check_int(offset, "offset")
        check_int(limit_bytes, "limit_bytes", 1, 64 * 2**20)
        if tail is not None:
            return self._tail(run_id, attempt, stream, check_int(tail, "tail", 1),
                              limit_bytes)
        lc = log_chunks.c
        with self._read() as conn:
            if attempt is None:
                attempt = self._latest_attempt(conn, run_id)
            else:
                check_attempt(attempt)
            key = [lc.run_id == run_id, lc.attempt == attempt, lc.stream == stream]
            # Start at the chunk holding `pos`: the last one that begins at or before it.
            start = conn.execute(sa.select(sa.func.max(lc.offset))
                                 .where(*key, lc.offset <= pos)).scalar()
            out = bytearray()
            cursor = pos if start is None else int(start)
            first = True
            while len(out) < limit_bytes:
                batch = conn.execute(
                    sa.select(lc.offset, lc.data)
                    .where(*key, lc.offset >= cursor if first else lc.offset > cursor)
                    .order_by(lc.offset).limit(_LOG_BATCH)).all()
                first = False
                for chunk_offset, data in batch:
                    if chunk_offset > pos:
                        break  # a gap: what follows has not arrived
                    raw = data.encode("utf-8")
                    if chunk_offset + len(raw) > pos:
                        take = raw[pos - chunk_offset:pos - chunk_offset + limit_bytes - len(out)]
                        out += take
                        pos += len(take)
                        if len(out) >= limit_bytes:
                            break
                else:
                    if len(batch) == _LOG_BATCH:
                        cursor = batch[-1][0]
                        continue
                break
        text, used = _decode_prefix(bytes(out))
        return {"data": text, "offset": offset, "next_offset": pos - (len(out) - used),
                "attempt": attempt}

    def _latest_attempt(self, conn: sa.Connection, run_id: str) -> int:
        lc = log_chunks.c
        run_attempt = conn.execute(sa.select(runs.c.attempt).where(runs.c.id == run_id)).scalar()
        if run_attempt is None:
            raise errors.NotFound(f"run {run_id!r} not found")
        logged = conn.execute(sa.select(sa.func.max(lc.attempt))
                              .where(lc.run_id == run_id)).scalar()
        return max(int(run_attempt), int(logged or 0))

    def _tail(self, run_id: str, attempt: int | None, stream: str, lines: int,
              limit_bytes: int) -> dict[str, Any]:
        """The last ``lines`` lines: chunks read newest first until enough newlines (or a
        gap, the start, or ``limit_bytes``) are found."""
        lc = log_chunks.c
        with self._read() as conn:
            attempt = (self._latest_attempt(conn, run_id) if attempt is None
                       else check_attempt(attempt))
            key = [lc.run_id == run_id, lc.attempt == attempt, lc.stream == stream]
            parts: list[bytes] = []
            start = end = None  # byte range held in parts
            size = newlines = 0
            cursor: int | None = None
            done = False
            while not done:
                where = key if cursor is None else [*key, lc.offset < cursor]
                batch = conn.execute(sa.select(lc.offset, lc.data).where(*where)
                                     .order_by(lc.offset.desc()).limit(_LOG_BATCH)).all()
                for chunk_offset, data in batch:
                    raw = data.encode("utf-8")
                    if start is None:
                        start, end = chunk_offset + len(raw), chunk_offset + len(raw)
                    if chunk_offset + len(raw) < start:
                        done = True  # a gap: what came before is not contiguous with this
                        break
                    raw = raw[:start - chunk_offset]  # chunks may overlap
                    parts.append(raw)
                    start = chunk_offset
                    size += len(raw)
                    newlines += raw.count(b"\n")
                    # One newline more than lines asked: the text may end with one.
                    if newlines > lines or size >= limit_bytes or start == 0:
                        done = True
                        break
                if len(batch) < _LOG_BATCH:
                    break
                cursor = batch[-1][0]
        if start is None or end is None:
            return {"data": "", "offset": 0, "next_offset": 0, "attempt": attempt}
        raw = b"".join(reversed(parts))
        if len(raw) > limit_bytes:
            raw = raw[len(raw) - limit_bytes:]
        # Back from the end (a final newline ends the last line, it starts none).
        cut = len(raw) - 1 if raw.endswith(b"\n") else len(raw)
        for _ in range(lines):
            cut = raw.rfind(b"\n", 0, cut)
            if cut < 0:
                break
        keep = raw if cut < 0 else raw[cut + 1:]
        while keep and keep[0] & 0xC0 == 0x80:  # never start inside a character
            keep = keep[1:]
        return {"data": keep.decode("utf-8", errors="replace"), "offset": end - len(keep),
                "next_offset": end, "attempt": attempt}


def _decode_prefix(raw: bytes) -> tuple[str, int]:
    """Decode ``raw``, leaving out a character cut at its end; returns (text, bytes used)."""
    for cut in range(len(raw), max(len(raw) - 4, -1), -1):
        try:
            return raw[:cut].decode("utf-8"), cut
        except UnicodeDecodeError:
            continue
    # Not UTF-8 at all (an offset pointing inside a character): replace what is bad.
    return raw.decode("utf-8", errors="replace"), len(raw)
