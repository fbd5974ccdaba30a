"""Probing one attempt's protocol files: what changed since the last look.

Each :meth:`Probe.read` reads the snapshot (``RUNYARD_PROGRESS_FILE``) and the new lines of the
metrics stream (``RUNYARD_METRICS_FILE``) and returns the calls to make: a progress call when
the snapshot changed or there is something to warn about, and metric batches of at most
:data:`MAX_POINTS_PER_CALL` points. A bad snapshot is a warning, once per kind of problem per
attempt (not once a tick); a snapshot that never appears is reported once, after
:data:`MISSING_GRACE_S` or at the final read, since a process may take a while to write its
first one (and a plain script may never write any).

Code written for Kubeflow Trainer writes its progression file instead
(``TRAINJOB_PROGRESSION_FILE_PATH``, :mod:`runyard.progress.kubeflow`): it is read on the
same ticks, with the same warnings for a bad file, and becomes a v1 snapshot and metric
points. It is optional, so its absence is never reported; once it was read, neither is the
absence of the v1 snapshot.
"""

from __future__ import annotations

import codecs
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runyard import defaults, timestamps
from runyard.agent import wire
from runyard.progress import kubeflow, reader

#: Most metric points in one ``POST /v1/runs/{id}/metrics`` (the server takes 100,000):
#: large enough that a fast loop's backlog drains in a few calls.
MAX_POINTS_PER_CALL = 20_000
#: Seconds a snapshot may be absent at the start before it is reported as missing.
MISSING_GRACE_S = 60.0
#: Bad metric lines reported one by one per attempt; the rest are counted.
MAX_LINE_WARNINGS = 20
#: Longest a new snapshot waits for the metrics stream's backlog to be read (beyond it, the
#: progress of a run whose metrics outpace the agent moves on ahead of its series).
SNAPSHOT_HOLD_MAX_S = 5.0


@dataclass
class ProbeResult:
    """What one read found: ``progress`` is the body of a progress call, or None;
    ``metric_batches`` are the ``rows`` of metrics calls (:class:`wire.WireRows`)."""

    progress: dict[str, Any] | None = None
    metric_batches: list[list[wire.WireRow]] = field(default_factory=list)
    #: Points in ``metric_batches``.
    points: int = 0
    #: The metrics stream has a backlog beyond this read: read again without waiting.
    more: bool = False


class Probe:
    """Incremental reader of one attempt's snapshot and metrics stream."""

    def __init__(self, progress_file: str | os.PathLike[str],
                 metrics_file: str | os.PathLike[str], *,
                 clock: Callable[[], float] = time.monotonic,
                 missing_grace_s: float = MISSING_GRACE_S,
                 progression_file: str | os.PathLike[str] | None = None) -> None:
        self.progress_file = os.fspath(progress_file)
        self.progression_file = None if progression_file is None \
            else os.fspath(progression_file)
        self._progression_last: dict[str, Any] | None = None  # the document last forwarded
        self.tail = reader.MetricsTail(metrics_file)
        self._clock = clock
        self._started = clock()
        self._missing_grace_s = missing_grace_s
        self._last: dict[str, Any] | None = None
        self._held: dict[str, Any] | None = None  # read, not yet forwarded
        self._held_since = 0.0
        self._warned: set[str] = set()
        self._line_warnings = 0
        self.snapshots_read = 0
        self.points_read = 0

    @property
    def last_snapshot(self) -> dict[str, Any] | None:
        return self._last

    def read(self, *, final: bool = False) -> ProbeResult:
        """What changed since the last read; ``final`` drains the metrics stream fully."""
        result = ProbeResult()
        warnings: list[str] = []
        snap = self._read_snapshot(warnings, final)
        progression = self._read_progression(warnings)
        if progression is not None and snap is None:
            # A run that writes both has its v1 snapshot forwarded first; the progression
            # file's goes on a later read (it is not marked forwarded until then).
            doc, mapped = progression
            self._progression_last = doc
            self.snapshots_read += 1
            snap = mapped.snapshot
            if mapped.rows():
                result.metric_batches.append(mapped.rows())
                result.points += len(mapped.points)
                self.points_read += len(mapped.points)
        # One time for the points written without one: once a read, not a point.
        rows = wire.WireRows(at=timestamps.format_time(), batch_points=MAX_POINTS_PER_CALL,
                               max_tag=defaults.METRIC_NAME_MAX)
        while True:
            before = self.tail.offset
            got = self.tail.read_lines()
            rows.add(got)
            # The final read drains the stream: until nothing new is complete.
            if not final or (self.tail.offset == before and not got):
                break
        result.more = got.more and not final
        warnings.extend(self._line_warning_texts(rows.warnings))
        if rows.long_tag is not None:
            # The server refuses a whole batch for one such tag; drop just the point.
            self._warn_once(warnings, "long-tag",
                            f"metric tags longer than {defaults.METRIC_NAME_MAX} "
                            f"characters are not forwarded (first: {rows.long_tag[:80]!r})")
        if rows.big_step is not None:
            self._warn_once(warnings, "big-step",
                            f"metric steps above {defaults.METRIC_STEP_MAX} are not forwarded "
                            f"(first: {str(rows.big_step)[:40]})")
        self.points_read += rows.points
        result.metric_batches.extend(rows.batches)
        result.points += rows.points
        snap = self._release(snap, backlog=result.more)
        if snap is not None or warnings:
            result.progress = {"snapshot": snap, "warnings": warnings}
        return result

    def _release(self, snap: dict[str, Any] | None, *,
                 backlog: bool) -> dict[str, Any] | None:
        """The snapshot to forward now, if any. The snapshot is read before the metrics, so
        every line it mentions is in the file by then; but while a backlog of lines is left
        for the next read, it would run ahead of the stored series: it is held (the newest
        one wins) until a read gets to the end of the stream."""
        if snap is not None:
            if self._held is None:
                self._held_since = self._clock()
            self._held = snap
        if self._held is None or (
                backlog and self._clock() - self._held_since < SNAPSHOT_HOLD_MAX_S):
            return None
        snap, self._held = self._held, None
        return snap

    def _read_snapshot(self, warnings: list[str], final: bool) -> dict[str, Any] | None:
        last_seq = None
        if self._last is not None:
            seq = self._last.get("seq")
            last_seq = seq if isinstance(seq, int) and not isinstance(seq, bool) else None
        got = reader.read_snapshot(self.progress_file, last_seq)
        state = got.state
        if state is reader.ReadState.OK:
            if got.snapshot == self._last:
                return None  # no seq, same content: nothing new
            self._last = got.snapshot
            self.snapshots_read += 1
            return got.snapshot
        if state is reader.ReadState.UNCHANGED:
            return None
        if state is reader.ReadState.MISSING:
            waited = self._clock() - self._started >= self._missing_grace_s
            if self._last is None and (not (final or waited)
                                       or self._progression_last is not None):
                return None  # not yet, or the run reports through Kubeflow's file
            what = "disappeared" if self._last is not None else "was never written"
            self._warn_once(warnings, "missing",
                            f"progress file {what}: {self.progress_file}"
                            + (f" ({got.reason})" if got.reason else ""))
            return None
        self._warn_once(warnings, state.value,
                        f"progress file {state.value}: {got.reason or 'unreadable'}; "
                        "the last good snapshot is kept")
        return None

    def _read_progression(self, warnings: list[str]
                          ) -> tuple[dict[str, Any], kubeflow.Mapped] | None:
        """Kubeflow's progression file, when it changed since it was last forwarded: the
        document and what it maps to. A bad file is a warning (once per kind), as a bad v1
        snapshot is; a metric that is not a number, a warning once per name."""
        if self.progression_file is None:
            return None
        got = reader.read_snapshot(self.progression_file, validate=False)
        state = got.state
        if state is reader.ReadState.MISSING:
            return None  # optional: most runs never write it
        if state is reader.ReadState.OK:
            assert got.snapshot is not None
            if got.snapshot == self._progression_last:
                return None
            try:
                mapped = kubeflow.from_progression_file(got.snapshot, now=time.time())
            except ValueError as exc:
                state, reason = reader.ReadState.INVALID, str(exc)
            else:
                for name, text in mapped.problems.items():
                    self._warn_once(warnings, f"progression-value:{name}",
                                    f"progression file {text}")
                return got.snapshot, mapped
        else:
            reason = got.reason or "unreadable"
        self._warn_once(warnings, f"progression-{state.value}",
                        f"progression file {state.value}: {reason}; the last good "
                        "progression is kept")
        return None

    def _warn_once(self, warnings: list[str], kind: str, text: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            warnings.append(text)

    def _line_warning_texts(self, found: list[reader.TailWarning]) -> list[str]:
        out = []
        for w in found:
            self._line_warnings += 1
            if self._line_warnings <= MAX_LINE_WARNINGS:
                out.append(f"metrics file line {w.line} skipped: {w.reason}")
            elif self._line_warnings == MAX_LINE_WARNINGS + 1:
                out.append(f"metrics file: more than {MAX_LINE_WARNINGS} bad lines; "
                           "further ones are skipped without a warning")
        return out


# ------------------------------------------------------------------------------------ logs

#: Most bytes of one stream put into one log chunk.
LOG_CHUNK_BYTES = 256 * 1024


class LogBuffer:
    """Collects ``on_output(stream, offset, data)`` chunks until the next drain.

    Filled by the process's reader threads, drained by the attempt loop. Each drained chunk
    carries the byte offset (in that stream's log) where its text starts; a UTF-8 character
    cut between two reads is held back until its last byte arrives, so every chunk decodes
    cleanly and the server's ``(attempt, stream, offset)`` key stays exact.
    """

    def __init__(self, chunk_bytes: int = LOG_CHUNK_BYTES) -> None:
        self._lock = threading.Lock()
        self._chunk_bytes = chunk_bytes
        self._pending: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        self._end: dict[str, int] = {"stdout": 0, "stderr": 0}  # byte offset after pending
        self._text_at: dict[str, int] = {}  # where the next chunk's text starts, by stream
        self._decoders = {s: codecs.getincrementaldecoder("utf-8")(errors="replace")
                          for s in self._pending}
        self.bytes_in = 0

    def add(self, stream: str, offset: int, data: bytes) -> None:
        """The :data:`runyard.agent.process.OutputCallback`."""
        with self._lock:
            buf = self._pending.setdefault(stream, bytearray())
            self._text_at.setdefault(stream, offset)
            buf += data
            self._end[stream] = offset + len(data)
            self.bytes_in += len(data)

    def drain(self, *, final: bool = False) -> list[dict[str, Any]]:
        """``[{"stream", "offset", "data"}]`` for everything added since the last drain."""
        out: list[dict[str, Any]] = []
        with self._lock:
            for stream, buf in self._pending.items():
                if stream not in self._text_at or (not buf and not final):
                    continue
                data = bytes(buf)
                buf.clear()
                decoder = self._decoders.setdefault(
                    stream, codecs.getincrementaldecoder("utf-8")(errors="replace"))
                pos = self._end[stream] - len(data)
                for i in range(0, max(len(data), 1), self._chunk_bytes):
                    piece = data[i:i + self._chunk_bytes]
                    last = i + self._chunk_bytes >= len(data)
                    text = decoder.decode(piece, final=final and last)
                    pos += len(piece)
                    if text:
                        out.append({"stream": stream, "offset": self._text_at[stream],
                                    "data": text})
                    held = len(decoder.getstate()[0])
                    self._text_at[stream] = pos - held
        return out
