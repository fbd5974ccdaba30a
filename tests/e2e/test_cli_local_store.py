"""With no server running, the read commands read the data directory's embedded store: a real
SDK run in embedded mode (its own process), then real ``runyard`` processes reading it."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runyard import defaults
from runyard.client.client import DEFAULT_SERVER
from runyard.store import default_url, open_store

from ..support.live_server import free_port

REPO = Path(__file__).resolve().parents[2]

TRAIN = """
import pathlib, sys, time
import runyard

signals = pathlib.Path(sys.argv[1])
with runyard.start_run(name=sys.argv[2], project="nb", total_steps=10, config={"lr": 0.01},
                       handle_sigterm=False) as run:
    assert run.mode == "embedded", run.mode
    for step in range(10):
        run.log({"loss": 1.0 / (step + 1), "acc": 0.5}, step=step)
    (signals / "ready").write_text(run.run_id)
    deadline = time.monotonic() + 120
    while not (signals / "go").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
"""


@pytest.fixture(autouse=True)
def _no_default_server() -> None:
    """These tests need nothing at the default address (a `runyard up` by hand would be)."""
    with socket.socket() as s:
        s.settimeout(2)
        if s.connect_ex((defaults.HOST, defaults.PORT)) == 0:
            pytest.skip(f"something listens at {DEFAULT_SERVER} on this machine")


def runyard(data: Path, *args: str, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    """``runyard ARGS`` with ``data`` as the data directory and no server named."""
    full = {k: v for k, v in os.environ.items() if k != "RUNYARD_SERVER"}
    full.update({"RUNYARD_DATA_DIR": str(data), "PYTHONPATH": str(REPO), "COLUMNS": "200",
                 **(env or {})})
    return subprocess.run([sys.executable, "-m", "runyard", *args], capture_output=True,
                          text=True, env=full, timeout=120, stdin=subprocess.DEVNULL)


def notice(data: Path) -> str:
    return (f"runyard: no server at {DEFAULT_SERVER}; reading the local store at "
            f"{data / 'runyard.db'}")


def read(data: Path, *args: str) -> str:
    """A read command's stdout; it succeeded and said once where it read from."""
    proc = runyard(data, *args)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [notice(data)], proc.stderr
    return proc.stdout


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1 and proc.stdout == "", (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the run exited with {proc.returncode}: "
                                 f"{proc.stderr.read() if proc.stderr else ''}")
        assert time.monotonic() < deadline, f"no {path.name} after {timeout} s"
        time.sleep(0.05)


def test_read_commands_read_an_embedded_run_with_no_server(tmp_path: Path) -> None:
    data, signals = tmp_path / "data", tmp_path / "signals"
    signals.mkdir()
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    env = {k: v for k, v in os.environ.items() if k != "RUNYARD_SERVER"}
    env.update({"RUNYARD_DATA_DIR": str(data), "PYTHONPATH": str(REPO)})
    proc = subprocess.Popen([sys.executable, str(script), str(signals), "nb-live"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(signals / "ready", proc)
        run_id = (signals / "ready").read_text()
        # While the run trains, its process writing: read beside the writer.
        live = read(data, "ls")
        assert run_id in live and "nb-live" in live and "running" in live
        # Writing still needs a server, and says so.
        assert "cannot reach the server" in one_line_error(runyard(data, "stop", "nb-live"))
        (signals / "go").write_text("")
        assert proc.wait(timeout=120) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    db = data / "runyard.db"
    before = hashlib.sha256(db.read_bytes()).hexdigest()

    listed = json.loads(read(data, "ls", "--json"))
    assert [(r["id"], r["name"], r["status"]) for r in listed["items"]] == [
        (run_id, "nb-live", "completed")]
    table = read(data, "ls", "--status", "completed", "--project", "nb")
    assert run_id in table and "completed" in table and "loss=0.1" in table
    assert read(data, "ls", "--status", "failed").strip() == "no runs"

    shown = json.loads(read(data, "show", "nb-live", "--json"))
    assert shown["run"]["id"] == run_id and shown["run"]["config"] == {"lr": 0.01}
    assert [e["status"] for e in reversed(shown["events"]) if e["kind"] == "status"] == [
        "queued", "claimed", "running", "completed"]
    text = read(data, "show", run_id[:8])
    assert run_id in text and "completed" in text and "step 9/10" in text

    tags = json.loads(read(data, "metrics", "nb-live", "--json"))
    assert {t["tag"]: t["count"] for t in tags["items"]} == {"loss": 10, "acc": 10}
    loss = read(data, "metrics", "nb-live", "--tag", "loss", "--csv").splitlines()
    assert loss[0] == "step,tag,value,at,attempt" and len(loss) == 11
    assert json.loads(read(data, "checkpoints", "nb-live", "--json")) == {"items": []}
    assert read(data, "logs", "nb-live") == ""
    assert f"run {run_id}: completed" in read(data, "wait", "nb-live")
    assert "completed" in read(data, "watch", "nb-live", "--once")

    # Nothing the reads did changed the database.
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    missing = runyard(data, "show", "no-such-run")
    assert missing.returncode == 1 and missing.stdout == ""
    said, line = missing.stderr.splitlines()  # where it read, then the one-line error
    assert said == notice(data) and line == "runyard: no run with the id or name 'no-such-run'"


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    """A data directory holding an empty, migrated embedded store."""
    data = tmp_path / "data"
    open_store(default_url(data)).close()
    return data


def test_a_named_server_that_is_down_stays_an_error(store_dir: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    for how in ({"env": {"RUNYARD_SERVER": dead}}, {"args": ("--server", dead)},
                {"args": ("--server", DEFAULT_SERVER)}):
        args = ("ls", *how.get("args", ()))
        proc = runyard(store_dir, *args, env=how.get("env"))  # type: ignore[arg-type]
        line = one_line_error(proc)
        assert "cannot reach the server" in line and "local store" not in proc.stderr, how
    shown = runyard(store_dir, "show", "x", "--json", env={"RUNYARD_SERVER": dead})
    assert "cannot reach the server" in one_line_error(shown)


def test_without_a_local_store_the_error_stays(tmp_path: Path) -> None:
    data = tmp_path / "nothing-here"
    line = one_line_error(runyard(data, "ls"))
    assert "cannot reach the server" in line
    assert not data.exists()  # looking did not create a data directory


def test_a_store_of_another_schema_is_refused_not_migrated(store_dir: Path) -> None:
    store = open_store(default_url(store_dir), upgrade=False)
    try:
        head = store.current_revision()
        store.downgrade("-1")
        older = store.current_revision()
    finally:
        store.close()
    assert older != head
    proc = runyard(store_dir, "ls")
    assert proc.returncode == 1 and proc.stdout == "" and "Traceback" not in proc.stderr
    said, line = proc.stderr.splitlines()
    assert said == notice(store_dir)
    assert "runyard db upgrade" in line and str(older) in line and str(head) in line
    store = open_store(default_url(store_dir), upgrade=False)
    try:
        assert store.current_revision() == older
    finally:
        store.close()
