"""Fuzzing what a training process writes: whatever bytes land in the progress file or the
metrics stream, the reader answers with a state or a warning and never raises, and every
point it does return is one the server would take."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runyard.progress import reader, snapshot
from runyard.progress.metrics_stream import TAG_MAX

#: JSON-like values, nested, with the awkward floats and text a loop can produce.
_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                    st.text(max_size=20))
_VALUES = st.recursive(_LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=20)
#: Lines that look like the stream's, with any field wrong, missing or extra.
_POINTS = st.fixed_dictionaries({}, optional={
    "step": st.one_of(st.integers(), st.floats(), st.text(max_size=5), st.none()),
    "tag": st.one_of(st.text(max_size=80), st.integers(), st.none()),
    "value": st.one_of(st.floats(allow_nan=True), st.integers(), st.text(max_size=10)),
    "at": st.one_of(st.text(max_size=30), st.floats(), st.none()),
    "extra": _VALUES,
})
#: Derandomized: the same examples on every run, so the suite never passes or fails by luck.
_FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])


def _line(obj: Any) -> bytes:
    return json.dumps(obj, allow_nan=True).encode()


@_FUZZ
@given(raw=st.one_of(st.binary(max_size=200), _POINTS.map(_line)))
def test_any_stream_line_is_a_point_or_a_warning(raw: bytes) -> None:
    got = reader.parse_line(raw)
    if isinstance(got, str):
        assert got  # a warning says what was wrong
        return
    assert isinstance(got.step, int) and got.step >= 0
    assert isinstance(got.tag, str) and 0 < len(got.tag) <= TAG_MAX
    assert isinstance(got.value, float)


@_FUZZ
@given(lines=st.lists(st.one_of(st.binary(max_size=120), _POINTS.map(_line)), max_size=12))
def test_a_stream_file_of_any_lines_reads_without_raising(tmp_path: Path,
                                                          lines: list[bytes]) -> None:
    path = tmp_path / "metrics.jsonl"
    content = b"\n".join(lines) + b"\n"
    path.write_bytes(content)
    batch = reader.MetricsTail(path).read_all()
    # At most one point or one warning per line of the file (a binary line may hold newlines).
    assert len(batch.points) + len(batch.warnings) <= content.count(b"\n")


@_FUZZ
@given(content=st.one_of(st.binary(max_size=300), _VALUES.map(_line),
                         st.dictionaries(st.sampled_from(
                             ["v", "schema", "seq", "step", "total_steps", "epoch", "message",
                              "metrics", "eta_seconds", "percent", "updated_at"]),
                             _VALUES, max_size=8).map(_line)))
def test_any_progress_file_reads_as_a_state_never_an_exception(tmp_path: Path,
                                                               content: bytes) -> None:
    path = tmp_path / "progress.json"
    path.write_bytes(content)
    got = reader.read_snapshot(path)
    assert isinstance(got.state, reader.ReadState)
    if got.snapshot is not None:
        # What the reader hands on is checked again by the server; that must not raise.
        assert isinstance(snapshot.check_types(got.snapshot), list)
        assert isinstance(snapshot.check_bounds(got.snapshot), list)
