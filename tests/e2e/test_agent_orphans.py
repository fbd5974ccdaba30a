"""Orphaned training processes: recorded by the agent, stopped by its successor."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runyard.agent import orphans

from ..support.agents import pid_alive

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups")


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                            start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def _attempt(work: Path) -> Path:
    root = work / "run1" / "1"
    root.mkdir(parents=True)
    return root


def test_record_and_forget(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    root = _attempt(tmp_path)
    orphans.record(root, sleeper.pid)
    data = json.loads((root / orphans.RECORD_FILE).read_text())
    assert data["pid"] == sleeper.pid and data["started_at"] > 0
    orphans.forget(root)
    assert not (root / orphans.RECORD_FILE).exists()


def test_a_dead_agents_process_is_stopped(tmp_path: Path,
                                          sleeper: subprocess.Popen[bytes]) -> None:
    root = _attempt(tmp_path)
    orphans.record(root, sleeper.pid)
    data = json.loads((root / orphans.RECORD_FILE).read_text())
    data.update(agent_pid=999_999_999, agent_started_at=1.0)  # an agent that is gone
    (root / orphans.RECORD_FILE).write_text(json.dumps(data))
    assert orphans.reap(tmp_path, grace_s=5) == [root]
    assert sleeper.wait(30) is not None
    assert not (root / orphans.RECORD_FILE).exists()


def test_a_live_agents_process_and_a_reused_pid_are_left_alone(
        tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    root = _attempt(tmp_path)
    orphans.record(root, sleeper.pid)
    data = json.loads((root / orphans.RECORD_FILE).read_text())
    # Another agent on this work dir, alive (the sleeper plays it): its process is its own.
    other = {"agent_pid": data["pid"], "agent_started_at": data["started_at"]}
    (root / orphans.RECORD_FILE).write_text(json.dumps(data | other))
    assert orphans.reap(tmp_path) == []
    assert (root / orphans.RECORD_FILE).exists()
    # The pid names a process that started later than recorded: a reused pid.
    (root / orphans.RECORD_FILE).write_text(json.dumps(
        data | {"agent_pid": 999_999_999, "started_at": data["started_at"] - 100}))
    assert orphans.reap(tmp_path) == []
    assert pid_alive(sleeper.pid) and sleeper.poll() is None
    assert not (root / orphans.RECORD_FILE).exists()  # a stale record is dropped
