"""The metrics stream's fast paths against their reference: the SDK's row encoder writes the
bytes of ``encode_line``, whatever the tags, values and times."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from runyard.progress import metrics_stream
from runyard.progress.metrics_stream import RowEncoder, encode_line
from runyard.progress.snapshot import utc_iso
from runyard.sdk import file_sink

T0 = 1_796_000_000.9994  # close to a second's end: the next millisecond is a new second


class Float(float):
    """A float subclass with a repr of its own, as numpy.float64 has."""

    def __repr__(self) -> str:
        return f"Float({float(self)!r})"


class Int(int):
    def __repr__(self) -> str:
        return f"Int({int(self)})"


TAGS = ["loss", "val/acc", 'quo"te', "back\\slash", "ünïcödé", "tab\there", "emoji😀",
        "line\u2028sep", "ctl\x01"]
VALUES: list[Any] = [0.5, 1 / 3, -0.0, 0.0, 1e300, 5e-324, -1e-7, math.nan, math.inf,
                     -math.inf, 0, 7, -3, 2**70, Float(0.25), Float(math.nan), Int(4)]
TIMES = [T0, T0 + 0.0001, T0 + 0.0007, T0 + 0.5, T0 + 1.0, T0 + 86_400 * 400, 0.0, T0]


def rows() -> list[tuple[int, float, dict[str, Any]]]:
    out = []
    for i, t in enumerate(TIMES * 3):
        metrics = {tag: VALUES[(i + j) % len(VALUES)] for j, tag in enumerate(TAGS)}
        out.append((i * 1_000_003, t, metrics))
    out.append((2**63 - 1, T0, {"big": 1.0}))
    out.append((5, T0, {}))  # a log() whose values were all dropped: no line
    return out


def reference(rows_: list[tuple[int, float, dict[str, Any]]]) -> list[str]:
    return [encode_line(step, tag, value, utc_iso(t))
            for step, t, metrics in rows_ for tag, value in metrics.items()]


def strict(line: str) -> dict[str, Any]:
    def refuse(name: str) -> None:
        raise ValueError(f"bare {name}")
    obj = json.loads(line, parse_constant=refuse)
    assert isinstance(obj, dict)
    return obj


def test_row_encoder_writes_the_bytes_of_encode_line() -> None:
    encoder = RowEncoder()
    assert encoder.lines(rows()) == reference(rows())
    # Twice: the second pass comes from the tag and time caches.
    assert encoder.lines(rows()) == reference(rows())


def test_row_encoder_past_its_tag_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RowEncoder, "MAX_CACHED_TAGS", 2)
    encoder = RowEncoder()
    assert encoder.lines(rows()) == reference(rows())
    assert len(encoder._tags) == 2


def test_lines_are_strict_json_with_the_protocol_spellings() -> None:
    lines = RowEncoder().lines(rows())
    objs = [strict(line) for line in lines]
    assert all(line.endswith("}\n") and line.count("\n") == 1 for line in lines)
    assert [list(o) for o in objs] == [["step", "tag", "value", "at"]] * len(objs)
    values = {o["value"] for o in objs if isinstance(o["value"], str)}
    assert values == {"NaN", "Infinity", "-Infinity"}
    # A float subclass is written as the float it is, not with its repr.
    assert {o["value"] for o in objs if o["tag"] == "loss"} >= {0.25, 4}
    assert objs[0]["at"] == utc_iso(T0) and objs[-1]["step"] == 2**63 - 1


def test_file_sink_write_rows_matches_write_points(tmp_path: Path) -> None:
    paths = file_sink.FilePaths(progress_file=tmp_path / "a" / "progress.json",
                                metrics_file=tmp_path / "a" / "metrics.jsonl",
                                checkpoints_file=tmp_path / "a" / "checkpoints.jsonl",
                                events_file=tmp_path / "a" / "events.jsonl")
    sink = file_sink.FileSink(paths, run_id="r1")
    sink.write_rows(rows())
    sink.write_rows([])
    sink.write_rows(rows()[:2])
    sink.close("completed", {})
    want = "".join(reference(rows()) + reference(rows()[:2]))
    assert paths.metrics_file.read_bytes() == want.encode("utf-8")


def test_writer_counts_lines(tmp_path: Path) -> None:
    with metrics_stream.MetricsStreamWriter(tmp_path / "m.jsonl") as writer:
        assert writer.write_rows(rows()) == len(reference(rows()))
        assert writer.write_rows([(1, T0, {})]) == 0
