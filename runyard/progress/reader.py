"""Reading a run's protocol files: the snapshot, and the metrics stream by its new lines.

Nothing here raises for a bad file. A missing, partial, corrupt, oversized or invalid
snapshot is a *result* (the agent turns it into a warning event without failing the run), and
a corrupt metrics line is a *warning* with its line number.
"""

from __future__ import annotations

import enum
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runyard import defaults, nonfinite, timestamps
from runyard.progress import snapshot as snapshot_mod
from runyard.progress.metrics_stream import TAG_MAX, MetricPoint


class ReadState(enum.StrEnum):
    """Outcome of one snapshot read."""

    OK = "ok"
    UNCHANGED = "unchanged"  # valid, and its seq is the one the caller already has
    MISSING = "missing"
    PARTIAL = "partial"  # empty or cut short (a writer that does not rename atomically)
    CORRUPT = "corrupt"  # not JSON / not UTF-8
    OVERSIZED = "oversized"
    INVALID = "invalid"  # JSON, but not a v1 snapshot; ``reason`` says why


@dataclass(frozen=True, slots=True)
class SnapshotRead:
    """A typed snapshot read. ``snapshot`` is set for ``ok`` and ``unchanged``.

    The snapshot is kept in its wire form (non-finite numbers as strings) so that it can be
    forwarded as JSON unchanged; use :func:`nonfinite.decode` to read a value.
    """

    state: ReadState
    snapshot: dict[str, Any] | None = None
    reason: str | None = None
    size: int | None = None

    @property
    def ok(self) -> bool:
        return self.state is ReadState.OK

    @property
    def seq(self) -> int | None:
        seq = (self.snapshot or {}).get("seq")
        return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


def _keep_constant(name: str) -> str:
    # Python's json writes bare NaN/Infinity by default; accept them and keep the v1 spelling.
    return name


#: One decoder for every metrics line: ``json.loads`` with a keyword argument builds a new
#: decoder (and sniffs the encoding) per call, a large share of the agent's parsing time.
_LINE_DECODER = json.JSONDecoder(parse_constant=_keep_constant)

#: orjson's ``loads`` where installed (with the server extra, the agent's): it decodes a
#: line much faster than the standard library, which decodes every line otherwise (the SDK
#: alone). It refuses NaN, the infinities and integers past 64 bits.
fast_loads: Callable[[bytes], Any] | None
try:
    from orjson import JSONDecodeError as _FastError
    from orjson import loads as _orjson_loads
    fast_loads = _orjson_loads
except ImportError:
    fast_loads = None


def _decode_line(raw: bytes) -> Any:
    """A line's JSON. orjson first when present; what it refuses (bare NaN/Infinity, lone
    surrogates), and a step it read as a float (integers past 64 bits), goes to the standard
    decoder, which has the last word."""
    if fast_loads is not None:
        try:
            obj = fast_loads(raw)
        except _FastError:
            pass
        else:
            if not (type(obj) is dict and type(obj.get("step")) is float):
                return obj
    return _LINE_DECODER.decode(raw.decode("utf-8"))


def read_snapshot(path: str | os.PathLike[str], last_seq: int | None = None, *,
                  max_bytes: int = defaults.SNAPSHOT_MAX_BYTES,
                  validate: bool = True) -> SnapshotRead:
    """Read the snapshot at ``path``. Never raises for a bad or absent file.

    ``last_seq`` is the seq of the snapshot the caller already forwarded; a valid snapshot
    with that seq reads as ``unchanged``.
    """
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > max_bytes:
                return SnapshotRead(ReadState.OVERSIZED, size=size,
                                    reason=f"{size} bytes exceeds {max_bytes} bytes")
            data = fh.read(max_bytes + 1)
    except FileNotFoundError:
        return SnapshotRead(ReadState.MISSING)
    except OSError as exc:  # a directory, no permission...: unreadable counts as missing
        return SnapshotRead(ReadState.MISSING, reason=f"{type(exc).__name__}: {exc}")
    size = len(data)
    if size > max_bytes:  # grew between fstat and read
        return SnapshotRead(ReadState.OVERSIZED, size=size,
                            reason=f"more than {max_bytes} bytes")
    if not data.strip():
        return SnapshotRead(ReadState.PARTIAL, size=size, reason="empty file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return SnapshotRead(ReadState.CORRUPT, size=size, reason=f"not UTF-8: {exc}")
    try:
        obj = json.loads(text, parse_constant=_keep_constant)
    except json.JSONDecodeError as exc:
        # An error at the very end of the text (or a string never closed) means the document
        # was cut short, as by a writer that truncates and rewrites in place.
        cut = exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string")
        state = ReadState.PARTIAL if cut else ReadState.CORRUPT
        return SnapshotRead(state, size=size, reason=f"{exc.msg} at line {exc.lineno} "
                                                      f"column {exc.colno}")
    except RecursionError:
        return SnapshotRead(ReadState.CORRUPT, size=size, reason="nested too deeply")
    if not isinstance(obj, dict):
        return SnapshotRead(ReadState.INVALID, size=size,
                            reason=f"expected a JSON object, got {type(obj).__name__}")
    if validate:
        problems = snapshot_mod.validate_snapshot(obj)
        if problems:
            return SnapshotRead(ReadState.INVALID, snapshot=None, size=size,
                                reason="; ".join(problems[:5]))
    result = SnapshotRead(ReadState.OK, snapshot=obj, size=size)
    if last_seq is not None and result.seq == last_seq:
        return SnapshotRead(ReadState.UNCHANGED, snapshot=obj, size=size)
    return result


# ------------------------------------------------------------------------------ metrics tail

@dataclass(frozen=True, slots=True)
class TailWarning:
    """A line of the metrics stream that was skipped, with its 1-based line number."""

    line: int
    reason: str


@dataclass(slots=True)
class TailBatch:
    """What one :meth:`MetricsTail.read` found."""

    points: list[MetricPoint] = field(default_factory=list)
    warnings: list[TailWarning] = field(default_factory=list)
    #: The read stopped at :attr:`MetricsTail.CHUNK` with more of the file still unread.
    more: bool = False

    def __bool__(self) -> bool:
        return bool(self.points or self.warnings)


@dataclass(slots=True)
class TailLines:
    """What one :meth:`MetricsTail.read_lines` found: ``lines[i]`` is line ``first + i``."""

    first: int
    lines: list[bytes] = field(default_factory=list)
    warnings: list[TailWarning] = field(default_factory=list)
    more: bool = False

    def __bool__(self) -> bool:
        return bool(self.lines or self.warnings)


def parse_line(raw: bytes) -> MetricPoint | str:
    """One stream line as a point, or the reason it is not one."""
    try:
        obj = _decode_line(raw.removeprefix(b"\xef\xbb\xbf"))
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError
        return f"not JSON: {exc}"
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {type(obj).__name__}"
    # Exact-type tests first: this runs for every line the local-run sync reads.
    step = obj.get("step")
    if type(step) is not int and (isinstance(step, bool) or not isinstance(step, int)) \
            or step < 0:
        return f"step: expected a non-negative integer, got {step!r}"
    tag = obj.get("tag")
    if type(tag) is not str or not tag or len(tag) > TAG_MAX:
        return f"tag: expected a string of 1 to {TAG_MAX} characters, got {str(tag)[:80]!r}"
    value = obj.get("value")
    if type(value) is not float:
        try:
            value = nonfinite.decode(value)
        except OverflowError:  # an integer with hundreds of digits: no float holds it
            value = None
    if value is None:
        return f"value: expected a number, 'NaN' or '(-)Infinity', got {obj.get('value')!r}"
    at = obj.get("at")
    if at is not None and not isinstance(at, str):
        return f"at: expected an ISO 8601 string, got {at!r}"
    if not _is_unicode(tag) or at is not None and not _is_unicode(at):
        # Only the standard decoder lets one through; no JSON encoder on the way to the
        # server's store takes it (orjson refuses it: the agent's whole call would fail).
        return "not valid Unicode: a lone surrogate escape (\\ud800 to \\udfff)"
    if at is not None and not timestamps.is_time(at):
        # The server refuses a whole call for one such time: the line is left out instead.
        return f"at: expected an ISO 8601 time, got {at[:80]!r}"
    return MetricPoint(step, tag, value, at)


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True




class MetricsTail:
    """Incremental reader of a metrics stream, by byte offset.

    Each :meth:`read` returns the complete lines appended since the last one; a last line
    without its newline is left for the next read (the writer is mid-write). Calling it
    when nothing changed costs one ``stat``. A file that shrinks or is replaced (new inode)
    is read again from the start, with a warning.
    """

    #: Most bytes one read consumes, so a huge backlog is drained in bounded steps: about
    #: one metrics call's points of lines as the SDK writes them (20,000 of about 80 bytes),
    #: so the agent sends a backlog's first batch after parsing that much, and parses the
    #: next chunk while the server stores it.
    CHUNK = 1536 * 1024

    def __init__(self, path: str | os.PathLike[str], *, offset: int = 0, line: int = 0) -> None:
        self.path = os.fspath(path)
        self.offset = offset
        self.line = line  # lines consumed so far; the next line is number line + 1
        self._inode: int | None = None
        self._skipping = False  # inside an over-long line: drop bytes up to its newline

    def read(self) -> TailBatch:
        """New complete points and warnings since the last call. Never raises for bad data."""
        got = self.read_lines()
        batch = TailBatch(warnings=got.warnings, more=got.more)
        for number, raw in enumerate(got.lines, got.first):
            if not raw.strip():
                continue
            parsed = parse_line(raw)
            if isinstance(parsed, MetricPoint):
                batch.points.append(parsed)
            else:
                batch.warnings.append(TailWarning(number, parsed))
        return batch

    def read_lines(self) -> TailLines:
        """The complete lines appended since the last call, unparsed (blank ones included:
        they are numbered too), with the warnings about the file itself."""
        got = TailLines(first=self.line + 1)
        try:
            st = os.stat(self.path)
        except OSError:
            return got
        if self._inode is not None and st.st_ino != self._inode and self.offset:
            got.warnings.append(TailWarning(self.line + 1, "file replaced; reading it again"))
            self.offset, self.line, self._skipping = 0, 0, False
        elif st.st_size < self.offset:
            got.warnings.append(TailWarning(self.line + 1, "file truncated; reading it again"))
            self.offset, self.line, self._skipping = 0, 0, False
        self._inode = st.st_ino
        if st.st_size == self.offset:
            return got
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read(self.CHUNK)
        except OSError:
            return got
        end = data.rfind(b"\n")
        if end < 0:
            if len(data) >= self.CHUNK:  # no newline in a whole chunk: a runaway line
                self._skip(got.warnings, len(data), f"line longer than {self.CHUNK} bytes")
            return got
        self.offset += end + 1
        got.more = len(data) >= self.CHUNK
        lines = data[:end].split(b"\n")
        if self._skipping:
            self._skipping = False
            del lines[0]  # the tail of the over-long line, already reported
        got.first = self.line + 1
        got.lines = lines
        self.line += len(lines)
        return got

    def _skip(self, warnings: list[TailWarning], n: int, reason: str) -> None:
        if not self._skipping:
            self.line += 1
            warnings.append(TailWarning(self.line, reason))
        self._skipping = True
        self.offset += n

    def read_all(self) -> TailBatch:
        """Read until nothing new is complete (for the final read after the process exits)."""
        total = TailBatch()
        while True:
            before = self.offset
            batch = self.read()
            total.points.extend(batch.points)
            total.warnings.extend(batch.warnings)
            if self.offset == before and not batch:
                return total
