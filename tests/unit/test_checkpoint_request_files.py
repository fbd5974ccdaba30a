"""The checkpoint request's two file-side halves: the agent's request file (made from
heartbeat answers, gone once the loop registers a checkpoint) and the SDK's reading of it
(``run.checkpoint_requested``, answered once per request)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from runyard.agent.checkpoint_request import RequestFile
from runyard.sdk.file_sink import RequestWatch
from runyard.sdk.run import Run

T1, T2 = "2026-12-08T10:00:00.000Z", "2026-12-08T10:05:00.000Z"


def _register(checkpoints: Path) -> None:
    with open(checkpoints, "a") as fh:
        fh.write(json.dumps({"path": "x.pt", "step": 1, "status": "incomplete"}) + "\n")


def test_agent_request_file_follows_heartbeats_and_the_loops_answer(tmp_path: Path) -> None:
    path, checkpoints = tmp_path / "CHECKPOINT", tmp_path / "checkpoints.jsonl"
    _register(checkpoints)  # one registered before the request answers nothing
    req = RequestFile(path, checkpoints)
    req.heartbeat(None)
    assert not path.exists() and not req.probe()
    req.heartbeat(T1)
    assert json.loads(path.read_text()) == {"requested_at": T1}
    assert path.stat().st_mode & 0o777 == 0o644  # readable by a run started as another user
    assert not req.probe() and path.exists()
    _register(checkpoints)
    assert req.probe() and not path.exists()
    # The server names it until the upload reaches it: the file does not come back.
    req.heartbeat(T1)
    assert not path.exists()
    req.heartbeat(T2)  # a new request
    assert json.loads(path.read_text()) == {"requested_at": T2}
    req.heartbeat(None)  # no longer asked (answered elsewhere, or the attempt moved on)
    assert not path.exists()
    req.heartbeat(T2)
    assert path.exists()
    req.close()
    assert not path.exists()
    req.heartbeat("2026-12-08T11:00:00.000Z")  # after the exit: never again
    assert not path.exists() and not list(tmp_path.glob(".runyard-*"))


def test_sdk_request_watch_names_each_request(tmp_path: Path) -> None:
    path = tmp_path / "CHECKPOINT"
    watch = RequestWatch(path)
    assert watch.current() is None
    path.write_text(json.dumps({"requested_at": T1}))
    first = watch.current()
    assert first is not None and T1 in first and watch.current() == first
    path.unlink()
    assert watch.current() is None
    path.touch()  # made by hand, empty: named by its identity on disk
    by_hand = watch.current()
    assert by_hand and by_hand != first


class RequestSink:
    """A sink recording nothing, whose pending request the test sets."""

    mode = "test"
    run_id = "r1"
    attempt = 1
    checkpoint_dir: Path | None = None
    artifact_dir: Path | None = None

    def __init__(self) -> None:
        self.request: str | None = None
        self.checkpoints: list[Any] = []

    def load_config(self) -> dict[str, Any] | None:
        return None

    def write_points(self, points: Sequence[Any]) -> None:
        pass

    def write_snapshot(self, snapshot: Mapping[str, Any]) -> None:
        pass

    def write_event(self, kind: str, details: Mapping[str, Any]) -> None:
        pass

    def register_checkpoint(self, record: Any) -> None:
        self.checkpoints.append(record)

    def stop_requested(self) -> bool:
        return False

    def checkpoint_request(self) -> str | None:
        return self.request

    def close(self, status: str, details: Mapping[str, Any]) -> None:
        pass


def _until(cond: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_run_answers_each_request_once(tmp_path: Path) -> None:
    sink = RequestSink()
    with Run(sink=sink, handle_sigterm=False) as run:  # type: ignore[arg-type]
        assert not run.checkpoint_requested
        sink.request = T1
        assert _until(lambda: run.checkpoint_requested)
        run.checkpoint(tmp_path / "a.pt", step=3)
        # Answered at once, although the sink still names the request (upload under way).
        assert not run.checkpoint_requested
        sink.request = T2
        assert _until(lambda: run.checkpoint_requested)
        sink.request = None  # cleared elsewhere: nothing to do any more
        assert _until(lambda: not run.checkpoint_requested)
    assert [c.step for c in sink.checkpoints] == [3]


def test_non_writing_ranks_read_the_request_file(tmp_path: Path) -> None:
    path = tmp_path / "CHECKPOINT"
    env = {"RANK": "1", "RUNYARD_CHECKPOINT_REQUEST_FILE": str(path)}
    with Run(env=env, handle_sigterm=False) as run:
        assert run.mode == "inactive" and not run.checkpoint_requested
        path.write_text(json.dumps({"requested_at": T1}))
        assert _until(lambda: run.checkpoint_requested)
        run.checkpoint(tmp_path / "b.pt")  # writes nothing on this rank; answers all the same
        assert not run.checkpoint_requested
        os.unlink(path)
        path.write_text(json.dumps({"requested_at": T2}))
        assert _until(lambda: run.checkpoint_requested)


def test_local_mode_takes_a_request_file_made_by_hand(tmp_path: Path) -> None:
    from runyard.sdk.file_sink import LocalDirSink
    from runyard.sdk.sink import RunInfo

    sink = LocalDirSink.create(tmp_path, RunInfo(name="by-hand"))
    request = sink.root / "CHECKPOINT"
    with Run(sink=sink, handle_sigterm=False) as run:
        assert not run.checkpoint_requested
        request.touch()  # what a person does
        assert _until(lambda: run.checkpoint_requested)
        assert run.checkpoint_dir is not None
        saved = run.checkpoint_dir / "now.pt"
        saved.write_bytes(b"w")
        run.checkpoint(saved, step=7)
        assert not run.checkpoint_requested
        assert _until(lambda: not request.exists())  # answered: nobody else removes it
    lines = (sink.root / "checkpoints.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [7]
