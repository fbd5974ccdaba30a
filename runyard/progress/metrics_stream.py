"""The metrics stream of ``runyard.progress/v1``: an append-only JSON Lines file.

Each line is ``{"step": 1200, "tag": "loss", "value": 0.31, "at": "<ISO 8601 UTC>"}``; every
logged point is kept, never only the latest. Non-finite values are spelled ``"NaN"``,
``"Infinity"``, ``"-Infinity"`` as in the snapshot.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import IO

from runyard import nonfinite, timestamps

#: Longest tag a stream line may carry. Longer than the snapshot's metric-name bound (64) so
#: that long hierarchical tags are still recorded; they are only left out of the snapshot.
TAG_MAX = 256


@dataclass(frozen=True, slots=True)
class MetricPoint:
    """One logged value. ``at`` is ISO 8601 UTC (None when a foreign writer left it out)."""

    step: int
    tag: str
    value: float
    at: str | None

    def to_json(self) -> dict[str, object]:
        """The point as a JSON-safe dict (non-finite values as strings)."""
        return {"step": self.step, "tag": self.tag, "value": nonfinite.encode(self.value),
                "at": self.at}


def _value_text(value: float) -> str:
    """A value as its JSON text: ``repr`` of the float (valid JSON when finite), the quoted
    string of a non-finite one, or the integer."""
    if isinstance(value, float):
        # float(): a subclass (numpy.float64) has a repr of its own, not JSON.
        enc = nonfinite.encode(float(value))
        return f'"{enc}"' if isinstance(enc, str) else repr(enc)
    return str(int(value))


def encode_line(step: int, tag: str, value: float, at: str | None) -> str:
    """One stream line, newline included."""
    # Hand-built rather than json.dumps of a dict: this runs for every point the SDK logs.
    # Tags and timestamps go through json.dumps.
    at_text = "null" if at is None else f'"{at}"'
    return f'{{"step":{int(step)},"tag":{json.dumps(tag, ensure_ascii=False)},' \
           f'"value":{_value_text(value)},"at":{at_text}}}\n'


#: ``(step, time in UNIX seconds, {tag: value})``: what ``run.log()`` recorded.
Row = tuple[int, float, Mapping[str, float]]


class RowEncoder:
    """Stream lines for rows, byte for byte what :func:`encode_line` writes for each point
    at ``timestamps.format_time(time)``, at a fraction of the cost.

    The SDK's background thread shares the training process's interpreter lock with the
    loop, so its cost per point is what decides how far the file lags behind the loop. A
    tag's JSON text is built once per run, a row's time is formatted once per row (and
    reused while the millisecond, or the second, is the same), and a finite float takes the
    shortest path.
    """

    #: Distinct tags whose text is kept (the SDK admits at most 10,000 per run).
    MAX_CACHED_TAGS = 20_000

    def __init__(self) -> None:
        self._tags: dict[str, str] = {}  # tag -> '"tag","value":'
        self._ms = -1
        self._at = ""
        self._second = -1
        self._second_text = ""

    def at(self, t: float) -> str:
        """``timestamps.format_time(t)``, from the cache when the millisecond is the last one's."""
        ms = timestamps.epoch_ms(t)
        if ms != self._ms:
            second = ms // 1000
            if second != self._second:
                self._second = second
                self._second_text = timestamps.format_ms(second * 1000)[:-5]  # no ".mmmZ"
            self._ms = ms
            self._at = f"{self._second_text}.{ms % 1000:03d}Z"
        return self._at

    def _tag_text(self, tag: str) -> str:
        text = f'{json.dumps(tag, ensure_ascii=False)},"value":'
        if len(self._tags) < self.MAX_CACHED_TAGS:
            self._tags[tag] = text
        return text

    def lines(self, rows: Iterable[Row]) -> list[str]:
        """One line (newline included) per point, in row and then tag order."""
        out: list[str] = []
        append = out.append
        tags = self._tags
        for step, t, metrics in rows:
            head = f'{{"step":{int(step)},"tag":'
            tail = f',"at":"{self.at(t)}"}}\n'
            for tag, value in metrics.items():
                tag_text = tags.get(tag) or self._tag_text(tag)
                if type(value) is float and value - value == 0.0:  # finite: repr is JSON
                    append(f"{head}{tag_text}{value!r}{tail}")
                else:
                    append(f"{head}{tag_text}{_value_text(value)}{tail}")
        return out


class MetricsStreamWriter:
    """Appends points to a metrics stream file; each call writes whole lines and flushes.

    The file is opened in append mode, so several writers (or a writer restarted after a
    crash) never overwrite each other's lines.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._fh: IO[str] | None = None
        self._encoder = RowEncoder()

    def _file(self) -> IO[str]:
        if self._fh is None:
            directory = os.path.dirname(self.path)
            if directory:
                os.makedirs(directory, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8", newline="\n")
        return self._fh

    def write_points(self, points: Iterable[MetricPoint]) -> int:
        """Append ``points``; returns how many lines were written."""
        return self._write([encode_line(p.step, p.tag, p.value, p.at) for p in points])

    def write_rows(self, rows: Iterable[Row]) -> int:
        """Append one line per point of ``rows``; returns how many lines were written."""
        return self._write(self._encoder.lines(rows))

    def _write(self, lines: list[str]) -> int:
        if lines:
            fh = self._file()
            # One write per batch: a reader sees either whole lines or a trailing partial
            # line, which it keeps for its next read.
            fh.write("".join(lines))
            fh.flush()
        return len(lines)

    def close(self) -> None:
        """Close the file (a later write reopens it)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> MetricsStreamWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
