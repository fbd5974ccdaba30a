"""Training processes that a dead agent left running, found and stopped by its successor.

Each training process runs in its own session, so it outlives an agent that dies without
stopping it (``kill -9``, the out-of-memory killer, a crash). The server ends such an attempt
as ``lost`` once its lease lapses and requeues the run, so the orphan trains for nobody, on a
GPU someone else may now need, and the host could train the same run twice. The agent
therefore records each process it starts in ``<attempt dir>/process.json`` (pid and start
time, its own too) and removes the record once the process has ended; a new agent on the same
work directory stops, before it claims anything, every recorded process whose agent is gone.

Start times guard against pid reuse: a record is acted on only when the live process with
that pid started when the record says. Without psutil (an agent installed without the server
extra) nothing is reaped.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RECORD_FILE = "process.json"
#: Seconds an orphan gets between SIGTERM and SIGKILL.
REAP_GRACE_S = 5.0
#: Start times are compared with this tolerance (psutil rounds them).
START_TOLERANCE_S = 0.05


def _started_at(pid: int) -> float | None:
    """The start time of process ``pid``, or None when there is none (or no psutil)."""
    try:
        import psutil

        return float(psutil.Process(pid).create_time())
    except Exception:  # no such process, no permission, no psutil
        return None


def _alive_as(pid: Any, started: Any) -> bool:
    if not isinstance(pid, int) or not isinstance(started, int | float):
        return False
    now = _started_at(pid)
    return now is not None and abs(now - float(started)) <= START_TOLERANCE_S


def record(root: Path, pid: int) -> None:
    """Note that this agent started ``pid`` for the attempt in ``root``."""
    data = {"pid": pid, "started_at": _started_at(pid), "agent_pid": os.getpid(),
            "agent_started_at": _started_at(os.getpid())}
    tmp = root / (RECORD_FILE + ".tmp")
    try:
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, root / RECORD_FILE)
    except OSError as exc:  # bookkeeping: never fail a run for it
        log.warning("cannot write %s: %s", root / RECORD_FILE, exc)


def forget(root: Path) -> None:
    """The process of the attempt in ``root`` has ended."""
    try:
        (root / RECORD_FILE).unlink(missing_ok=True)
    except OSError as exc:
        log.warning("cannot remove %s: %s", root / RECORD_FILE, exc)


def _signal(pid: int, signum: int) -> None:
    try:
        if sys.platform == "win32":
            import psutil

            proc = psutil.Process(pid)
            for p in [*proc.children(recursive=True), proc]:
                p.kill() if signum == signal.SIGKILL else p.terminate()
        else:
            os.killpg(pid, signum)  # the training process leads its own process group
    except Exception:  # already gone
        pass


def reap(work_dir: Path, grace_s: float = REAP_GRACE_S) -> list[Path]:
    """Stop the processes recorded under ``work_dir`` whose agent is gone; their attempt dirs.

    A record whose agent still runs (two agents sharing a work directory) is left alone, and
    one whose process has ended (or whose pid now names another process) is just removed.
    """
    found: list[tuple[Path, int]] = []
    for path in sorted(work_dir.glob(f"*/*/{RECORD_FILE}")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            continue
        if not isinstance(data, dict):
            path.unlink(missing_ok=True)
            continue
        if data.get("agent_pid") == os.getpid() or _alive_as(data.get("agent_pid"),
                                                             data.get("agent_started_at")):
            continue
        if _alive_as(data.get("pid"), data.get("started_at")):
            pid = int(data["pid"])
            log.warning("stopping pid %d (run %s attempt %s), left running by an agent that "
                        "died; the server has ended or will end that attempt as lost", pid,
                        path.parent.parent.name, path.parent.name)
            _signal(pid, signal.SIGTERM)
            found.append((path, pid))
        else:
            path.unlink(missing_ok=True)
    deadline = time.monotonic() + grace_s
    while found and time.monotonic() < deadline and any(_started_at(p) for _, p in found):
        time.sleep(0.1)
    for path, pid in found:
        _signal(pid, signal.SIGKILL)
        path.unlink(missing_ok=True)
    return [path.parent for path, _ in found]
