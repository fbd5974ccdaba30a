"""The metrics stream of ``runyard.progress/v1``: an append-only JSON Lines file.

Each line is ``{"step": 1200, "tag": "loss", "value": 0.31, "at": "<ISO 8601 UTC>"}``; every
logged point is kept, never only the latest. Non-finite values are spelled ``"NaN"``,
``"Infinity"``, ``"-Infinity"`` as in the snapshot.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO

from runyard.progress import snapshot

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
        return {"step": self.step, "tag": self.tag, "value": snapshot.encode_number(self.value),
                "at": self.at}


def encode_line(step: int, tag: str, value: float, at: str | None) -> str:
    """One stream line, newline included."""
    # Hand-built rather than json.dumps of a dict: this runs for every point the SDK logs.
    # repr() of a finite float is valid JSON; tags and timestamps go through json.dumps.
    if isinstance(value, float):
        enc = snapshot.encode_number(value)
        text = f'"{enc}"' if isinstance(enc, str) else repr(enc)
    else:
        text = str(int(value))
    at_text = "null" if at is None else f'"{at}"'
    return f'{{"step":{int(step)},"tag":{json.dumps(tag, ensure_ascii=False)},' \
           f'"value":{text},"at":{at_text}}}\n'


class MetricsStreamWriter:
    """Appends points to a metrics stream file; each call writes whole lines and flushes.

    The file is opened in append mode, so several writers (or a writer restarted after a
    crash) never overwrite each other's lines.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._fh: IO[str] | None = None

    def _file(self) -> IO[str]:
        if self._fh is None:
            directory = os.path.dirname(self.path)
            if directory:
                os.makedirs(directory, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8", newline="\n")  # noqa: SIM115
        return self._fh

    def write_points(self, points: Iterable[MetricPoint]) -> int:
        """Append ``points``; returns how many lines were written."""
        lines = [encode_line(p.step, p.tag, p.value, p.at) for p in points]
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
