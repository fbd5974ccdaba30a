"""``runyard agent`` as a command: options from env, --check, install, bad input, signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..support.agents import AgentProc, Api, pid_alive, training_pid, write_train_script
from ..support.live_server import free_port
from ..support.thread_server import ThreadServer


def _runyard(*args: str, env: dict[str, str] | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runyard", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def test_a_token_on_the_command_line_is_warned_about() -> None:
    """Every user of the host can read a process's argv (``ps``), whatever the agent does."""
    out = _runyard("agent", "--check", "--token", "ry_visible")
    assert out.returncode == 0, out.stderr
    assert "--token on the command line is visible to every user" in out.stderr
    quiet = _runyard("agent", "--check", env={"RUNYARD_TOKEN": "ry_hidden"})
    assert "visible to every user" not in quiet.stderr


def test_check_prints_the_self_test_with_fake_gpus_marked() -> None:
    out = _runyard("agent", "--check", "--labels", "zone=a", env={
        "RUNYARD_FAKE_GPUS": '[{"name": "Fake X", "vram_gib": 8}]',
        "RUNYARD_HOST_ID": "env-host"})
    assert out.returncode == 0, out.stderr
    assert "env-host" in out.stdout  # the host id came from RUNYARD_HOST_ID
    assert "FAKE" in out.stdout and "Fake X" in out.stdout
    assert "zone=a" in out.stdout


@pytest.mark.parametrize("args,message", [
    ([], "server: give --server URL or set RUNYARD_SERVER"),
    (["--server", "nope"], "server: expected an http:// or https:// URL"),
    (["--server", "http://127.0.0.1:1", "--labels", "novalue"], "labels: expected key=value"),
    (["--server", "http://127.0.0.1:1", "--executor", "kubernetes"],
     "executor: 'kubernetes' is not available in this agent (available: local, slurm)"),
    (["--server", "http://127.0.0.1:1", "--train-as", "no-such-user-xyz"],
     "train_as: no OS user named 'no-such-user-xyz'"),
])
def test_bad_options_are_one_line_errors(args: list[str], message: str) -> None:
    out = _runyard("agent", *args)
    assert out.returncode == 1
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_slots_below_one_is_a_usage_error() -> None:
    out = _runyard("agent", "--server", "http://127.0.0.1:1", "--slots", "0")
    assert out.returncode == 2


def test_install_dry_run_masks_the_token(tmp_path: Path) -> None:
    out = _runyard("agent", "install", "--server", "http://10.0.0.1:8470", "--user",
                   "--dry-run", "--slots", "2", "--labels", "gpu=yes",
                   env={"RUNYARD_TOKEN": "secret-token-123", "XDG_CONFIG_HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert "secret-token-123" not in out.stdout and "********" in out.stdout
    assert "--slots 2" in out.stdout and "--labels gpu=yes" in out.stdout
    assert not any(tmp_path.iterdir())  # a dry run writes nothing


def test_install_writes_the_unit(tmp_path: Path) -> None:
    out = _runyard("agent", "install", "--server", "http://10.0.0.1:8470", "--user",
                   "--token", "tok-1", env={"XDG_CONFIG_HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    unit = tmp_path / "systemd" / "user" / "runyard-agent.service"
    assert "runyard agent --server http://10.0.0.1:8470" in unit.read_text()
    env_file = tmp_path / "runyard" / "runyard-agent.env"
    assert "tok-1" in env_file.read_text() and (env_file.stat().st_mode & 0o777) == 0o600


def test_agent_keeps_trying_an_unreachable_server_and_stops_on_sigint(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "runyard", "agent", "--server", f"http://127.0.0.1:{port}",
         "--work-dir", str(tmp_path / "w")],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "RUNYARD_LOG_LEVEL": "INFO"})
    assert proc.stderr is not None
    err = ""
    while "retrying" not in err:  # however long a loaded machine takes to get there
        line = proc.stderr.readline()
        assert line, err
        err += line
    assert proc.poll() is None  # still trying
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=30)
    err += rest
    assert proc.returncode == 0, err
    assert "claim failed" in err and "retrying" in err


def test_second_signal_kills_the_runs_at_once(tmp_path: Path) -> None:
    server = ThreadServer(tmp_path / "server", stale_after_s=60).start()
    api = Api(server)
    agent: AgentProc | None = None
    try:
        script = write_train_script(tmp_path)
        rid = api.submit("stubborn", script, {"steps": 400, "sleep": 0.05,
                                              "on_sigterm": "ignore"})
        agent = AgentProc(server, api.worker_token(), "box", tmp_path / "work",
                          stop_grace_s=60)
        api.wait(rid, lambda r: r["status"] == "running" and r.get("progress") is not None)
        pid = training_pid(agent, rid, 1)
        agent.signal(signal.SIGTERM)
        time.sleep(1.0)
        assert agent.proc.poll() is None and pid_alive(pid)  # in its 60 s grace period
        started = time.monotonic()
        agent.signal(signal.SIGTERM)
        assert agent.wait(15) == 0
        assert time.monotonic() - started < 10
        assert not pid_alive(pid)
        assert api.wait(rid, {"queued"}, timeout=10)["termination_reason"] == "worker_shutdown"
    finally:
        if agent is not None:
            agent.stop()
        api.close()
        server.stop()
