"""The agent-side readers: snapshot states, the metrics tail, concurrency, other writers."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runyard import defaults
from runyard.progress import reader, snapshot
from runyard.progress.metrics_stream import MetricPoint, MetricsStreamWriter, encode_line
from runyard.progress.reader import MetricsTail, ReadState, read_snapshot

VALID = {"schema": "runyard.progress/v1", "seq": 3, "updated_at": "2026-01-01T00:00:00.000Z",
         "step": 10, "metrics": {"loss": "NaN"}}
REPO = Path(__file__).resolve().parents[2]


def _py_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_")}
    env["PYTHONPATH"] = str(REPO)
    return env


# --------------------------------------------------------------------------- snapshot states

def test_ok_and_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    snapshot.write_snapshot(path, VALID)
    first = read_snapshot(path)
    assert first.state is ReadState.OK and first.ok
    assert first.snapshot is not None and first.snapshot["metrics"] == {"loss": "NaN"}
    assert first.seq == 3
    assert read_snapshot(path, last_seq=3).state is ReadState.UNCHANGED
    assert read_snapshot(path, last_seq=2).state is ReadState.OK


def test_missing(tmp_path: Path) -> None:
    assert read_snapshot(tmp_path / "nope.json").state is ReadState.MISSING
    # A directory where the file should be is unreadable, reported rather than raised.
    assert read_snapshot(tmp_path).state is ReadState.MISSING


@pytest.mark.parametrize("content", [b"", b"   \n", b'{"schema": "runyard.progress/v1", "upd',
                                     b'{"schema": "runyard.progress/v1"'])
def test_partial(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "p.json"
    path.write_bytes(content)
    result = read_snapshot(path)
    assert result.state is ReadState.PARTIAL, result
    assert result.snapshot is None


@pytest.mark.parametrize("content", [b"\xff\xfe{}", b'{"a": 1} trailing', b"{oops: 1}",
                                     b'{"a": [1, 2,, 3]}'])
def test_corrupt(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "p.json"
    path.write_bytes(content)
    result = read_snapshot(path)
    assert result.state is ReadState.CORRUPT, result
    assert result.reason


def test_oversized_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_bytes(b"{" + b" " * defaults.SNAPSHOT_MAX_BYTES + b"}")
    result = read_snapshot(path)
    assert result.state is ReadState.OVERSIZED
    assert result.size == defaults.SNAPSHOT_MAX_BYTES + 2


@pytest.mark.parametrize(
    ("obj", "needle"),
    [([1, 2], "expected a JSON object"), ("text", "expected a JSON object"),
     ({"updated_at": "2026-01-01T00:00:00Z"}, "schema"),
     ({**VALID, "step": -4}, "step"),
     ({**VALID, "metrics": {"x" * 65: 1}}, "metrics")],
)
def test_invalid_with_reason(tmp_path: Path, obj: object, needle: str) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps(obj))
    result = read_snapshot(path)
    assert result.state is ReadState.INVALID
    assert result.reason and needle in result.reason


def test_bare_nan_tokens_are_read_as_v1_strings(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps({**VALID, "metrics": {"a": math.nan, "b": -math.inf}}))
    result = read_snapshot(path)
    assert result.ok and result.snapshot is not None
    assert result.snapshot["metrics"] == {"a": "NaN", "b": "-Infinity"}


def test_hammer_writer_and_reader_processes(tmp_path: Path) -> None:
    """Thousands of atomic replaces while another process reads: never a partial read."""
    path = tmp_path / "progress.json"
    writes = 3000
    writer = textwrap.dedent(f"""
        from runyard import timestamps
        from runyard.progress import snapshot
        pad = {{f"m{{i}}": i * 0.5 for i in range(200)}}
        for seq in range(1, {writes} + 1):
            snapshot.write_snapshot({str(path)!r}, {{"schema": "runyard.progress/v1",
                "seq": seq, "updated_at": timestamps.format_time(), "step": seq, "metrics": pad}})
    """)
    probe = textwrap.dedent(f"""
        import collections, json
        from runyard.progress import reader
        counts = collections.Counter()
        last = None
        while True:
            result = reader.read_snapshot({str(path)!r}, last_seq=last)
            counts[result.state.value] += 1
            if result.state.value not in ("ok", "unchanged", "missing"):
                counts["bad:" + str(result.reason)] += 1
            if result.seq is not None:
                assert last is None or result.seq >= last, (last, result.seq)
                last = result.seq
            if last == {writes}:
                break
        print(json.dumps(counts))
    """)
    env = _py_env()
    read_proc = subprocess.Popen([sys.executable, "-c", probe], env=env,
                                 stdout=subprocess.PIPE, text=True)
    subprocess.run([sys.executable, "-c", writer], env=env, check=True, timeout=120)
    out, _ = read_proc.communicate(timeout=120)
    assert read_proc.returncode == 0
    counts = json.loads(out)
    assert counts.get("ok", 0) > 10, counts  # the reader really raced the writer
    assert set(counts) <= {"ok", "unchanged", "missing"}, counts


# --------------------------------------------------------------------------- metrics tail

def test_tail_keeps_half_written_line_for_next_read(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    tail = MetricsTail(path)
    assert not tail.read()  # missing file: nothing, no error
    with open(path, "w") as fh:
        fh.write(encode_line(1, "loss", 0.5, "2026-01-01T00:00:00Z"))
        fh.write('{"step": 2, "tag": "loss", "val')
    batch = tail.read()
    assert [p.step for p in batch.points] == [1] and not batch.warnings
    assert not tail.read()  # the partial line is not returned, even twice
    with open(path, "a") as fh:
        fh.write('ue": "NaN", "at": null}\n')
    batch = tail.read()
    assert len(batch.points) == 1
    point = batch.points[0]
    assert (point.step, point.tag, point.at) == (2, "loss", None) and math.isnan(point.value)


def test_tail_reports_corrupt_lines_with_numbers(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join([
        json.dumps({"step": 1, "tag": "a", "value": 1}),
        "garbage",
        json.dumps({"step": -1, "tag": "a", "value": 1}),
        json.dumps({"step": 2, "tag": "", "value": 1}),
        json.dumps({"step": 3, "tag": "a", "value": "high"}),
        json.dumps({"step": 4, "tag": "a", "value": True}),
        "",
        json.dumps({"step": 5, "tag": "b", "value": "Infinity", "at": "x"}),
        json.dumps([1]),
        json.dumps({"step": 6, "tag": "b", "value": "Infinity", "at": "2026-01-01T00:00:00Z"}),
    ]) + "\n")
    batch = MetricsTail(path).read()
    assert [(p.step, p.tag, p.value) for p in batch.points] == [(1, "a", 1.0),
                                                               (6, "b", math.inf)]
    assert [w.line for w in batch.warnings] == [2, 3, 4, 5, 6, 8, 9]
    assert "not JSON" in batch.warnings[0].reason
    assert batch.warnings[1].reason.startswith("step")
    assert batch.warnings[3].reason.startswith("value")
    # The server refuses a whole call for a time it cannot read: the line goes instead.
    assert batch.warnings[5].reason == "at: expected an ISO 8601 time, got 'x'"


def test_tail_resets_when_file_is_truncated_or_replaced(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    with MetricsStreamWriter(path) as writer:
        writer.write_points([MetricPoint(i, "x", float(i), None) for i in range(5)])
    tail = MetricsTail(path)
    assert len(tail.read().points) == 5
    path.write_text(encode_line(9, "x", 1.0, None))  # shorter: truncated and rewritten
    batch = tail.read()
    assert [p.step for p in batch.points] == [9]
    assert "truncated" in batch.warnings[0].reason
    other = tmp_path / "other.jsonl"
    other.write_text(encode_line(7, "y", 2.0, None) * 3)
    os.replace(other, path)
    batch = tail.read()
    assert [p.step for p in batch.points] == [7, 7, 7]
    assert "replaced" in batch.warnings[0].reason


def test_tail_skips_a_runaway_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(MetricsTail, "CHUNK", 64)
    path = tmp_path / "m.jsonl"
    path.write_text("x" * 200 + "\n" + encode_line(1, "a", 1.0, None))
    total = MetricsTail(path).read_all()
    assert [p.step for p in total.points] == [1]
    assert len(total.warnings) == 1 and "longer than" in total.warnings[0].reason


def test_tail_with_concurrent_appends(tmp_path: Path) -> None:
    """A writer process appends in small, line-splitting pieces while we tail."""
    path = tmp_path / "m.jsonl"
    n = 5000
    writer = textwrap.dedent(f"""
        import os
        from runyard.progress.metrics_stream import encode_line
        fd = os.open({str(path)!r}, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        buf = "".join(encode_line(i, "loss", i / 7, "2026-01-01T00:00:00Z")
                      for i in range({n})).encode()
        # Odd-sized writes split lines in the middle, as a real writer may.
        for start in range(0, len(buf), 37):
            os.write(fd, buf[start:start + 37])
        os.close(fd)
    """)
    proc = subprocess.Popen([sys.executable, "-c", writer], env=_py_env())
    tail = MetricsTail(path)
    steps: list[int] = []
    while proc.poll() is None:
        batch = tail.read()
        assert not batch.warnings, batch.warnings
        steps.extend(p.step for p in batch.points)
    assert proc.returncode == 0
    steps.extend(p.step for p in tail.read_all().points)
    assert steps == list(range(n))
    assert tail.line == n and tail.offset == path.stat().st_size


def test_parse_line_accepts_huge_steps() -> None:
    point = reader.parse_line(b'{"step": 123456789012345678901234567890, "tag": "a", "value": 1}')
    assert isinstance(point, MetricPoint) and point.step == 123456789012345678901234567890


# --------------------------------------------------------------------------- other writers

@pytest.mark.skipif(shutil.which("sh") is None or shutil.which("awk") is None,
                    reason="needs a POSIX shell and awk")
def test_shell_example_writes_valid_files(tmp_path: Path) -> None:
    progress, metrics = tmp_path / "progress.json", tmp_path / "metrics.jsonl"
    env = {**_py_env(), "RUNYARD_PROGRESS_FILE": str(progress),
           "RUNYARD_METRICS_FILE": str(metrics), "RUNYARD_STOP_FILE": str(tmp_path / "STOP")}
    subprocess.run(["sh", str(REPO / "examples" / "shell_progress.sh"), "12"], env=env,
                   check=True, timeout=60, cwd=tmp_path)
    result = read_snapshot(progress)
    assert result.ok, result
    assert result.snapshot is not None
    assert result.snapshot["step"] == 12 and result.snapshot["status"] == "completed"
    assert result.snapshot["seq"] == 14  # setup + 12 steps + final
    batch = MetricsTail(metrics).read()
    assert not batch.warnings
    assert [p.step for p in batch.points] == list(range(1, 13))
    assert batch.points[-1].value == pytest.approx(1 / 12, rel=1e-5)
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []


@pytest.mark.skipif(shutil.which("sh") is None or shutil.which("awk") is None,
                    reason="needs a POSIX shell and awk")
def test_shell_example_honours_stop_file(tmp_path: Path) -> None:
    progress, stop = tmp_path / "progress.json", tmp_path / "STOP"
    stop.touch()
    env = {**_py_env(), "RUNYARD_PROGRESS_FILE": str(progress),
           "RUNYARD_METRICS_FILE": str(tmp_path / "m.jsonl"), "RUNYARD_STOP_FILE": str(stop)}
    subprocess.run(["sh", str(REPO / "examples" / "shell_progress.sh"), "50"], env=env,
                   check=True, timeout=60)
    result = read_snapshot(progress)
    assert result.ok and result.snapshot is not None
    assert result.snapshot["status"] == "stopped" and result.snapshot["step"] == 0


def test_tail_says_when_a_backlog_is_left_for_the_next_read(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": i, "tag": "loss", "value": i}) + "\n"
                            for i in range(50)))
    tail = reader.MetricsTail(path)
    tail.CHUNK = 200  # a few lines a read
    steps, reads = [], []
    while True:
        batch = tail.read()
        steps += [p.step for p in batch.points]
        reads.append(batch.more)
        if not batch.more:
            break
    assert steps == list(range(50))
    assert len(reads) > 5 and all(reads[:-1]) and reads[-1] is False
