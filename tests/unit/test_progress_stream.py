"""The metrics stream's fast paths against their reference: the SDK's row encoder writes the
bytes of ``encode_line``, whatever the tags, values and times; the agent's wire rows are what
it sent before them (points from ``parse_line``, grouped afterwards), whatever the lines."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import orjson
import pytest

from runyard import defaults, nonfinite, timestamps
from runyard.agent import wire
from runyard.progress import metrics_stream, reader
from runyard.progress.metrics_stream import RowEncoder, encode_line
from runyard.progress.reader import MetricsTail
from runyard.sdk import file_sink
from runyard.store import ingest
from runyard.timestamps import parse_time

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
    return [encode_line(step, tag, value, timestamps.format_time(t))
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


def test_row_encoder_with_values_logged_again() -> None:
    zero, sub, nan = 0.0, Float(0.5), math.nan
    values: list[Any] = [zero, zero, -0.0, zero, sub, sub, nan, nan, 3, 3, True, 1, 1.0, 1.0]
    rows_ = [(i, T0, {"lr": value, "other": 1 / (i + 1)}) for i, value in enumerate(values)]
    lines = RowEncoder().lines(rows_)
    assert lines == reference(rows_)
    assert [strict(line)["value"] for line in lines[::2]] == [
        0.0, 0.0, -0.0, 0.0, 0.5, 0.5, "NaN", "NaN", 3, 3, 1, 1, 1.0, 1.0]
    assert '"value":-0.0,' in lines[4] and '"value":1,' in lines[22]
    assert '"value":1.0,' in lines[24]


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
    assert objs[0]["at"] == timestamps.format_time(T0) and objs[-1]["step"] == 2**63 - 1


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


# --------------------------------------------------------------------------- the agent's rows

AT = "2026-05-01T10:00:00.000Z"
NOW = "2026-05-01T12:00:00.000Z"


def secs(text: str) -> float:
    """A time as the agent sends it: UNIX seconds."""
    seconds = parse_time(text, "at")
    assert seconds is not None
    return seconds


AT_S, NOW_S = secs(AT), secs(NOW)


def _line(**fields: Any) -> str:
    return json.dumps(fields) + "\n"


def nasty_stream() -> str:
    """Every kind of line a foreign writer (or a broken one) may leave."""
    long_tag, too_long = "t" * 100, "x" * 300
    lines = [
        _line(step=1, tag="loss", value=0.5, at=AT),
        _line(step=1, tag="acc", value="NaN", at=AT),
        _line(step=1, tag="loss", value=0.25, at=AT),  # the tag again: a new row
        "garbage\n",
        "\n",
        "   \n",
        _line(step=-1, tag="a", value=1),
        _line(step=2.0, tag="a", value=1),
        _line(step=True, tag="a", value=1),
        _line(step=10**30, tag="huge", value=1, at=AT),  # beyond 64 bits: a point, but
        _line(step=2**63, tag="huge", value=1, at=AT),  # the server would refuse its batch
        _line(step=2**63 - 1, tag="largest", value=1, at=AT),
        _line(step=2, tag="", value=1),
        _line(step=2, tag=too_long, value=1),  # beyond the stream's bound: a bad line
        _line(step=2, tag=long_tag, value=1, at=AT),  # beyond the server's: dropped
        _line(step=2, tag=long_tag + "b", value=1, at=AT),
        _line(step=2, tag=7, value=1),
        _line(step=2, tag="a", value=True),
        _line(step=2, tag="a", value="high"),
        _line(step=2, tag="a", value=None),
        _line(step=2, tag="a", value=[1]),
        '{"step": 2, "tag": "a", "value": 1' + "0" * 400 + "}\n",  # no float holds it
        '{"step": 2, "tag": "inf", "value": 1e400, "at": "' + AT + '"}\n',
        '{"step": 2, "tag": "bare", "value": NaN, "at": "' + AT + '"}\n',
        '{"step": 2, "tag": "bare", "value": -Infinity, "at": "' + AT + '"}\n',
        _line(step=3, tag="int", value=5, at=AT),
        _line(step=3, tag="big int", value=2**63 + 1, at=AT),
        _line(step=3, tag="neg zero", value=-0.0, at=AT),
        _line(step=3, tag="inf", value="Infinity", at=AT),
        _line(step=3, tag="ninf", value="-Infinity", at=AT),
        _line(step=3, tag="nan", value="nan"),  # not the protocol's spelling
        _line(step=4, tag="no time", value=1.5),
        _line(step=4, tag="null time", value=1.5, at=None),
        _line(step=4, tag="bad time", value=1.5, at=5),
        _line(step=4, tag="empty time", value=1.5, at=""),
        _line(step=4, tag="other time", value=1.5, at="2026-05-01T10:00:00.001Z"),
        "\ufeff" + _line(step=5, tag="bom", value=1.0, at=AT),
        '{"step": 5, "tag": "crlf", "value": 2.0, "at": "' + AT + '"}\r\n',
        '{"step": 5, "tag": "dup", "tag": "dup2", "value": 3.0, "at": "' + AT + '", "x": 1}\n',
        '{"step": 5, "tag": "\\u00fcnic\\u00f6de \\"q\\" \\\\", "value": 4.0, "at": "'
        + AT + '"}\n',
        '{"step": 5, "tag": "lone \\ud800", "value": 4.0, "at": "' + AT + '"}\n',
        "[1, 2]\n", "7\n", '"text"\n', "null\n", "{}\n",
        '{"step": 6, "tag": "cut", "val\n',
        "\xff\xfe not utf-8\n",
    ]
    lines += [_line(step=100 + i // 3, tag=("loss", "acc", "lr")[i % 3], value=i / 7, at=AT)
              for i in range(30)]
    return "".join(lines)


def write_nasty(path: Path) -> None:
    # The one line that is not UTF-8 at all.
    path.write_bytes(nasty_stream().encode().replace("\xff\xfe".encode(), b"\xff\xfe"))


def as_batches(points: list[dict[str, Any]], batch_points: int) -> list[list[list[Any]]]:
    """Points grouped into rows (consecutive points of one step and time, no tag twice),
    the rows into batches: a batch ends between rows once it holds ``batch_points``
    points, and a row stops growing at twice that."""
    batches: list[list[list[Any]]] = []
    count = 2 * batch_points
    last: list[Any] | None = None
    for p in points:
        if last is not None and last[0] == p["step"] and last[1] == p["at"] \
                and p["tag"] not in last[2] and count < 2 * batch_points:
            last[2][p["tag"]] = p["value"]
        else:
            if count >= batch_points:
                batches.append([])
                count = 0
            last = [p["step"], p["at"], {p["tag"]: p["value"]}]
            batches[-1].append(last)
        count += 1
    return batches


def previous_path(path: Path, batch_points: int, max_tag: int) -> tuple[Any, ...]:
    """The agent's previous path: points from ``MetricsTail.read_all``, the long tags left
    out, each point as a JSON dict, grouped into rows and batches (:func:`as_batches`). Steps
    above the server's bound are left out too (they used to fail their whole batch)."""
    batch = MetricsTail(path).read_all()
    points, long_tag, big_step = [], None, None
    for p in batch.points:
        if len(p.tag) > max_tag:
            long_tag = long_tag or p.tag
            continue
        if p.step > defaults.METRIC_STEP_MAX:
            big_step = big_step or p.step
            continue
        points.append({"step": p.step, "tag": p.tag, "value": nonfinite.encode(p.value),
                       "at": NOW if p.at is None else p.at})
    batches = as_batches(points, batch_points)
    for row in (row for batch in batches for row in batch):  # on the wire as seconds
        row[1] = secs(row[1] or NOW)
    warnings = [(w.line, w.reason) for w in batch.warnings]
    return batches, len(points), warnings, long_tag, big_step


def fast(path: Path, batch_points: int, max_tag: int) -> tuple[Any, ...]:
    tail = MetricsTail(path)
    rows = wire.WireRows(at=NOW, batch_points=batch_points, max_tag=max_tag)
    while got := tail.read_lines():
        rows.add(got)
    warnings = [(w.line, w.reason) for w in rows.warnings]
    return rows.batches, rows.points, warnings, rows.long_tag, rows.big_step


@pytest.fixture(params=["orjson", "json"])
def decoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both decoders: orjson (installed with the agent) and the standard library alone."""
    if request.param == "json":
        monkeypatch.setattr(reader, "fast_loads", None)
    return str(request.param)


@pytest.mark.parametrize("batch_points", [1, 2, 4, 20_000])
@pytest.mark.parametrize("chunk", [1000, MetricsTail.CHUNK])
def test_wire_rows_equal_the_previous_path(tmp_path: Path, decoder: str, batch_points: int,
                                           chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "metrics.jsonl"
    write_nasty(path)
    want = previous_path(path, batch_points, defaults.METRIC_NAME_MAX)
    monkeypatch.setattr(MetricsTail, "CHUNK", chunk)  # rows go on across reads
    got = fast(path, batch_points, defaults.METRIC_NAME_MAX)
    assert got == want
    # Byte for byte on the wire too (a float and an int of one value compare equal).
    assert orjson.dumps(got[0]) == orjson.dumps(want[0])


def test_wire_rows_of_the_nasty_stream(tmp_path: Path, decoder: str) -> None:
    """What the rows and warnings are, spelled out (not only equal to the previous path)."""
    path = tmp_path / "metrics.jsonl"
    write_nasty(path)
    batches, count, warnings, long_tag, big_step = fast(path, 20_000,
                                                        defaults.METRIC_NAME_MAX)
    assert [line for line, _ in warnings] == [4, 7, 8, 9, 13, 14, 17, 18, 19, 20, 21, 22, 31,
                                              34, 41, 42, 43, 44, 45, 46, 47, 48]
    reasons = dict(warnings)
    assert reasons[4].startswith("not JSON") and reasons[22].startswith("value:")
    assert reasons[31].startswith("value:") and reasons[34].startswith("at:")
    assert "lone surrogate" in reasons[41] and "decode byte 0xff" in reasons[48]
    assert long_tag == "t" * 100 and big_step == 10**30
    rows = batches[0]
    assert rows[:2] == [[1, AT_S, {"loss": 0.5, "acc": "NaN"}], [1, AT_S, {"loss": 0.25}]]
    assert rows[2] == [2**63 - 1, AT_S, {"largest": 1.0}]
    assert rows[3] == [2, AT_S, {"inf": "Infinity", "bare": "NaN"}]
    assert rows[4] == [2, AT_S, {"bare": "-Infinity"}]
    assert rows[5] == [3, AT_S, {"int": 5.0, "big int": float(2**63 + 1), "neg zero": -0.0,
                               "inf": "Infinity", "ninf": "-Infinity"}]
    assert type(rows[5][2]["int"]) is float and math.copysign(1, rows[5][2]["neg zero"]) < 0
    assert rows[6] == [4, NOW_S, {"no time": 1.5, "null time": 1.5}]
    assert rows[7:9] == [[4, NOW_S, {"empty time": 1.5}],
                         [4, secs("2026-05-01T10:00:00.001Z"), {"other time": 1.5}]]
    assert rows[9] == [5, AT_S, {"bom": 1.0, "crlf": 2.0, "dup2": 3.0, 'ünicöde "q" \\': 4.0}]
    assert rows[10:] == [[100 + i, AT_S, {"loss": 3 * i / 7, "acc": (3 * i + 1) / 7,
                                        "lr": (3 * i + 2) / 7}] for i in range(10)]
    assert count == sum(len(values) for _, _, values in rows) == 50
    orjson.dumps(batches)  # the agent's encoder takes every row


def test_probe_warns_once_about_points_the_server_would_refuse(tmp_path: Path) -> None:
    from runyard.agent import probe

    path = tmp_path / "metrics.jsonl"
    write_nasty(path)
    p = probe.Probe(tmp_path / "progress.json", path)
    got = p.read()
    assert got.progress is not None
    warnings = got.progress["warnings"]
    assert [w.split(" skipped")[0] for w in warnings if " skipped" in w] == [
        f"metrics file line {n}" for n in (4, 7, 8, 9, 13, 14, 17, 18, 19, 20, 21, 22, 31, 34,
                                           41, 42, 43, 44, 45, 46)] + [
        "metrics file: more than 20 bad lines; further ones are"]
    assert sum("tags longer than 64 characters are not forwarded" in w for w in warnings) == 1
    assert sum(f"steps above {2**63 - 1} are not forwarded (first: {10**30})" in w
               for w in warnings) == 1
    with open(path, "a") as fh:  # the same problems again: no second warning of a kind
        fh.write(_line(step=2**64, tag="t" * 65, value=1.0) + _line(step=2**64, tag="a", value=1))
    again = p.read()
    assert again.progress is None and again.points == 0 and p.points_read == 50


def test_probe_reads_what_the_sdk_writes(tmp_path: Path) -> None:
    """The SDK's lines through the agent's probe: every point, grouped as it was logged."""
    from runyard.agent import probe

    path = tmp_path / "metrics.jsonl"
    with metrics_stream.MetricsStreamWriter(path) as writer:
        writer.write_rows(rows())
    got = probe.Probe(tmp_path / "progress.json", path).read(final=True)
    assert got.progress is not None and got.progress["warnings"] == [
        f"progress file was never written: {tmp_path / 'progress.json'}"]
    sent = [row for batch in got.metric_batches for row in batch]
    want = [[step, secs(timestamps.format_time(t)), {tag: nonfinite.encode(float(value))
                                for tag, value in metrics.items()}]
            for step, t, metrics in rows() if metrics]
    assert sent == want
    assert got.points == sum(len(metrics) for _, _, metrics in rows())


def test_probe_rows_after_the_stream_is_truncated_or_replaced(tmp_path: Path) -> None:
    from runyard.agent import probe

    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(_line(step=i, tag="x", value=float(i), at=AT) for i in range(5)))
    p = probe.Probe(tmp_path / "progress.json", path)
    assert p.read().points == 5
    path.write_text(_line(step=9, tag="x", value=1.0, at=AT))  # shorter: truncated, rewritten
    got = p.read()
    assert got.metric_batches == [[[9, AT_S, {"x": 1.0}]]]
    assert got.progress is not None
    assert got.progress["warnings"] == ["metrics file line 6 skipped: file truncated; "
                                        "reading it again"]
    other = tmp_path / "other.jsonl"
    other.write_text(_line(step=7, tag="y", value=2.0, at=AT) * 3 + "oops\n")
    other.replace(path)
    got = p.read()
    # The three points of one step and time: the tag repeats, so a row each.
    assert got.metric_batches == [[[7, AT_S, {"y": 2.0}]] * 3]
    assert got.progress is not None and got.progress["warnings"] == [
        "metrics file line 2 skipped: file replaced; reading it again",
        "metrics file line 4 skipped: not JSON: Expecting value: line 1 column 1 (char 0)"]


def test_wire_batches_end_between_rows(tmp_path: Path) -> None:
    # What run.log({3 tags}, step=i) writes, 3 points a row: batches of 10 points end after
    # the row that reaches 10 (12 points), so every row of every batch holds all 3 tags and
    # the server takes each batch a column at a time.
    path = tmp_path / "metrics.jsonl"
    rows = [(i, 1_777_000_000.0, {"loss": 1.0 / (i + 1), "acc": 0.5, "lr": 0.1})
            for i in range(50)]
    path.write_text("".join(RowEncoder().lines(rows)))
    got = fast(path, 10, defaults.METRIC_NAME_MAX)[0]
    assert [sum(len(r[2]) for r in batch) for batch in got] == [12] * 12 + [6]
    assert all(len(r[2]) == 3 for batch in got for r in batch)
    assert all(ingest._row_columns(batch) is not None for batch in got)  # the fast pass
    assert [r[0] for batch in got for r in batch] == list(range(50))


def test_one_huge_row_still_fits_the_servers_bound(tmp_path: Path) -> None:
    # 45 tags at one step and time: one row would be 45 points; a row stops at twice the
    # batch size, so no batch holds more than that.
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(RowEncoder().lines([(7, 1_777_000_000.0,
                                                 {f"t{i}": float(i) for i in range(45)})])))
    got = fast(path, 10, defaults.METRIC_NAME_MAX)[0]
    assert [sum(len(r[2]) for r in batch) for batch in got] == [20, 20, 5]
    assert [t for batch in got for r in batch for t in r[2]] == [f"t{i}" for i in range(45)]
