"""The attempt's sender thread: calls in order, a bounded queue, failures raised once; and
an attempt that sends through it: every point once, in order, before the snapshot that
mentions it, and nothing after a lease conflict."""

from __future__ import annotations

import json
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from runyard.agent import attempt, probe
from runyard.agent.api import WorkerAPI
from runyard.agent.assignment import Assignment, AttemptSettings
from runyard.agent.sender import Sender
from runyard.progress import reader


def test_calls_run_in_order_on_one_thread() -> None:
    sender = Sender("test", max_pending=2)
    seen: list[tuple[int, str]] = []
    for i in range(50):
        sender.submit(lambda i=i: seen.append((i, threading.current_thread().name)))
    sender.wait()
    assert [i for i, _ in seen] == list(range(50))
    assert len({name for _, name in seen}) == 1
    assert seen[0][1] != threading.current_thread().name
    sender.close()


def test_submit_blocks_while_max_pending_calls_wait() -> None:
    sender = Sender("test", max_pending=2)
    gate = threading.Event()
    sender.submit(gate.wait)  # running
    sender.submit(lambda: None)  # queued
    third = threading.Thread(target=sender.submit, args=(lambda: None,))
    third.start()
    third.join(0.3)
    assert third.is_alive()  # the reader waits instead of piling batches up
    gate.set()
    third.join(5)
    assert not third.is_alive()
    sender.wait()
    sender.close()


def test_a_failure_is_raised_once_and_later_calls_still_run() -> None:
    sender = Sender("test")
    done: list[int] = []
    gate = threading.Event()

    def boom() -> None:
        gate.wait()
        raise KeyError("lost")

    sender.submit(boom)
    sender.submit(lambda: done.append(1))
    gate.set()
    with pytest.raises(KeyError):
        sender.wait()
    sender.wait()  # raised once
    assert done == [1]
    sender.submit(boom)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not sender._pending[0].done():
        time.sleep(0.01)
    with pytest.raises(KeyError):  # the next submit reports it
        sender.submit(lambda: done.append(2))
    sender.wait()
    assert done == [1]  # the call whose submit raised was not queued
    sender.close()


def test_close_waits_for_queued_calls() -> None:
    sender = Sender("test")
    done: list[int] = []
    sender.submit(lambda: (time.sleep(0.2), done.append(1)))
    sender.close()
    assert done == [1]


# --------------------------------------------------------------------------- an attempt

#: Writes ``steps`` steps of 3 points as fast as it can, a snapshot every 1,000 steps, and a
#: last one naming the last step: a backlog the agent reads while it sends.
FAST_WRITER = textwrap.dedent('''
    import json, os
    steps = json.load(open(os.environ["RUNYARD_CONFIG_FILE"]))["steps"]
    progress = os.environ["RUNYARD_PROGRESS_FILE"]
    with open(os.environ["RUNYARD_METRICS_FILE"], "a") as fh:
        for i in range(steps):
            for tag in ("loss", "acc", "lr"):
                fh.write(json.dumps({"step": i, "tag": tag, "value": i / 7,
                                     "at": "2026-01-01T00:00:00.000Z"}) + "\\n")
            if i % 1000 == 999 or i == steps - 1:
                fh.flush()
                with open(progress + ".tmp", "w") as snap:
                    json.dump({"schema": "runyard.progress/v1", "seq": i, "step": i,
                               "updated_at": "2026-01-01T00:00:00.000Z"}, snap)
                os.replace(progress + ".tmp", progress)
''')


def points_of(body: dict[str, Any]) -> list[tuple[int, str]]:
    """``(step, tag)`` of each point of a metrics body (rows), in order."""
    return [(row[0], tag) for row in body["rows"] for tag in row[2]]


class FakeServer:
    """The worker endpoints, answered in process; metrics calls take a while (a server
    storing a batch) and the n-th one may answer 409."""

    def __init__(self, conflict_on: int | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.metrics_calls = 0
        self.conflict_on = conflict_on
        self.lock = threading.Lock()

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        body = json.loads(request.content) if request.content else {}
        kind = path.rsplit("/", 1)[-1]
        if kind == "metrics":
            with self.lock:
                self.metrics_calls += 1
                n = self.metrics_calls
            if n == self.conflict_on:
                self.calls.append(("409", body))
                return httpx.Response(409, json={"error": {"type": "LeaseConflict",
                                                           "message": "stale"}})
            time.sleep(0.02)
        self.calls.append((kind, body))
        return httpx.Response(200, json={})

    def steps(self) -> list[int]:
        return [step for kind, body in self.calls if kind == "metrics"
                for step, _tag in points_of(body)]


def run_attempt(tmp_path: Path, server: FakeServer, steps: int) -> attempt.AttemptRunner:
    script = tmp_path / "train.py"
    script.write_text(FAST_WRITER)
    assignment = Assignment(run={"id": "run1", "name": "fast"}, attempt_id="att1", number=1,
                            lease="L", lease_expires_at=time.time() + 60,
                            command=[sys.executable, str(script)], env={},
                            config={"steps": steps}, probe_interval_s=0.05, seed=None)
    api = WorkerAPI("http://server", "tok", transport=httpx.MockTransport(server.handler))
    runner = attempt.AttemptRunner(assignment, api, AttemptSettings(
        host_id="h", work_dir=tmp_path / "work", probe_interval_s=0.05, sys_interval_s=0))
    runner.run()
    return runner


def test_an_attempt_sends_every_point_once_in_order_before_its_snapshot(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader.MetricsTail, "CHUNK", 64 * 1024)  # many reads, a backlog
    monkeypatch.setattr(probe, "MAX_POINTS_PER_CALL", 500)
    # The order holds while a snapshot waits less than the hold's cap; a loaded machine can
    # take longer than the cap to drain this backlog, so the cap is out of the way here.
    monkeypatch.setattr(probe, "SNAPSHOT_HOLD_MAX_S", 600.0)
    server = FakeServer()
    steps = 20_000
    runner = run_attempt(tmp_path, server, steps)
    assert runner.outcome is attempt.Outcome.COMPLETED
    assert server.steps() == [i for i in range(steps) for _ in range(3)]
    sent = 0  # points of each step sent so far
    for kind, body in server.calls:
        if kind == "metrics":
            sent += len(points_of(body))
        elif kind == "progress" and body.get("snapshot"):
            # Metrics before the snapshot that mentions them.
            assert sent >= 3 * (body["snapshot"]["step"] + 1)
    kinds = [kind for kind, _ in server.calls if kind != "heartbeat"]
    assert kinds[-1] == "complete" and "metrics" not in kinds[kinds.index("complete"):]
    # One row a step, 3 tags each: every batch goes as rows, nothing as points.
    assert all(body.get("rows") and not body.get("points")
               for kind, body in server.calls if kind == "metrics")


def test_a_lease_conflict_on_a_queued_batch_abandons_the_attempt(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader.MetricsTail, "CHUNK", 64 * 1024)
    monkeypatch.setattr(probe, "MAX_POINTS_PER_CALL", 500)
    server = FakeServer(conflict_on=3)
    runner = run_attempt(tmp_path, server, 20_000)
    assert runner.outcome is attempt.Outcome.ABANDONED
    kinds = [kind for kind, _ in server.calls if kind != "heartbeat"]
    conflict = kinds.index("409")
    # Nothing was sent after the 409 (the batches queued behind it were dropped), and no
    # report: another worker owns the run.
    assert kinds[conflict + 1:] == []
    sent = server.steps()  # the two batches before the conflict, as they were
    assert kinds[:conflict].count("metrics") == 2
    assert sent == [i for i in range(20_000) for _ in range(3)][:len(sent)]


def test_probe_holds_a_snapshot_while_a_backlog_is_left_but_not_for_ever(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader.MetricsTail, "CHUNK", 4096)
    now = [0.0]
    p = probe.Probe(tmp_path / "progress.json", tmp_path / "metrics.jsonl",
                    clock=lambda: now[0])
    line = json.dumps({"step": 1, "tag": "loss", "value": 0.5,
                       "at": "2026-01-01T00:00:00.000Z"}) + "\n"
    (tmp_path / "metrics.jsonl").write_text(line * 1000)  # 10+ reads' worth
    snap = {"schema": "runyard.progress/v1", "seq": 1, "step": 1,
            "updated_at": "2026-01-01T00:00:00.000Z"}
    (tmp_path / "progress.json").write_text(json.dumps(snap))
    first = p.read()
    assert first.more and first.points and first.progress is None  # held
    now[0] += probe.SNAPSHOT_HOLD_MAX_S
    late = p.read()
    assert late.more and late.progress == {"snapshot": snap, "warnings": []}  # waited enough
    snap2 = {**snap, "seq": 2, "step": 2}
    (tmp_path / "progress.json").write_text(json.dumps(snap2))
    reads = [p.read() for _ in range(100)]
    sent = [r.progress["snapshot"] for r in reads if r.progress is not None]
    ended = next(i for i, r in enumerate(reads) if not r.more)
    assert sent == [snap2] and reads[ended].progress is not None  # with the stream's end
    assert sum(r.points for r in reads) + first.points + late.points == 1000
