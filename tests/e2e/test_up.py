"""``runyard up`` as a real command: a server and an agent child, stopped in order."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from ..support.agents import pid_alive, write_train_script
from ..support.up import Up


@pytest.fixture
def ups() -> Iterator[list[Up]]:
    started: list[Up] = []
    yield started
    for up in started:
        up.stop()


def _client(up: Up, data_dir: Path) -> httpx.Client:
    token = (data_dir / "admin-token").read_text().strip()
    return httpx.Client(base_url=up.url, headers={"Authorization": f"Bearer {token}"},
                        timeout=15)


def _wait(client: httpx.Client, run_id: str, check: object, timeout: float = 30) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    run: dict = {}  # type: ignore[type-arg]
    while time.monotonic() < deadline:
        run = client.get(f"/v1/runs/{run_id}").json()
        if callable(check) and check(run):
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} is {run.get('status')}: {run}")


def test_up_runs_both_and_ctrl_c_requeues_the_agent_runs_as_worker_shutdown(
        tmp_path: Path, ups: list[Up]) -> None:
    data_dir = tmp_path / "data"
    script = write_train_script(tmp_path)
    # The data dir from RUNYARD_DATA_DIR; commands run in the directory `up` started in.
    first = Up(tmp_path, None, env={"RUNYARD_DATA_DIR": str(data_dir)}, cwd=tmp_path)
    ups.append(first)
    first.wait_ready()
    out = first.stdout()
    assert f"UI and API at http://127.0.0.1:{first.port}/" in out
    assert f"operator token in {data_dir / 'admin-token'}" in out
    assert (data_dir / "runyard.db").is_file()  # the embedded SQLite, under the data dir
    children = first.children()
    assert len(children) == 2
    with _client(first, data_dir) as client:
        assert client.get("/v1/health").status_code == 200
        resp = client.post("/v1/runs", json={
            "name": "long", "command": ["{python}", script.name, "--config", "{config_file}"],
            "config": {"steps": 400, "sleep": 0.05, "sleep_by_attempt": {"2": 0.005}},
            "probe_interval_s": 0.2})
        assert resp.status_code == 201, resp.text
        rid = resp.json()["id"]
        run = _wait(client, rid, lambda r: r["status"] == "running" and r.get("progress"))
        assert run["host_id"] == "laptop"
        workers = client.get("/v1/workers").json()["items"]
        assert [w["host_id"] for w in workers] == ["laptop"]
    first.proc.send_signal(signal.SIGINT)  # Ctrl-C
    assert first.proc.wait(40) == 0, first.stderr()
    assert "stopping: the agent first" in first.stderr()
    assert not any(pid_alive(c.pid) for c in children)

    # A second `up` on the same data dir: a fresh agent token, and the requeued run finishes.
    second = Up(tmp_path, data_dir, cwd=tmp_path)
    ups.append(second)
    second.wait_ready()
    with _client(second, data_dir) as client:
        run = _wait(client, rid, lambda r: r["status"] in ("completed", "failed"))
        assert run["status"] == "completed" and run["attempt"] == 2
        events = client.get(f"/v1/runs/{rid}/events", params={"limit": 1000}).json()["items"]
        reasons = [(e["attempt"], e["status"], e["details"].get("reason"))
                   for e in events if e["kind"] == "status"]
        assert (1, "queued", "worker_shutdown") in reasons
        tokens = {t["name"]: t for t in client.get("/v1/tokens").json()["items"]}
        assert tokens["local-agent"]["role"] == "worker" and not tokens["local-agent"][
            "revoked_at"]
    second.proc.send_signal(signal.SIGTERM)
    assert second.proc.wait(40) == 0, second.stderr()


def test_up_on_a_taken_port_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = subprocess.run(
            [sys.executable, "-m", "runyard", "up", "--port", str(port), "--data-dir",
             str(tmp_path / "data")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert out.stderr.strip() == (
        f"runyard: port {port} on 127.0.0.1 is already in use (another `runyard up` or "
        "server?); stop it or choose another port with --port")
    assert not (tmp_path / "data").exists()  # nothing was started or written


def test_children_stop_when_up_is_killed(tmp_path: Path, ups: list[Up]) -> None:
    up = Up(tmp_path, tmp_path / "data")
    ups.append(up)
    up.wait_ready()
    children = up.children()
    assert {c.cmdline()[3] for c in children} == {"server", "agent"}
    up.proc.kill()
    up.proc.wait()
    deadline = time.monotonic() + 15
    while any(pid_alive(c.pid) and c.status() != psutil.STATUS_ZOMBIE for c in children):
        assert time.monotonic() < deadline, "the server or the agent outlived `up`"
        time.sleep(0.1)


def test_up_help_and_bad_options() -> None:
    out = subprocess.run([sys.executable, "-m", "runyard", "up", "--help"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    for word in ("--data-dir", "--port", "--slots", "Ctrl-C", "SQLite"):
        assert word in out.stdout
    bad = subprocess.run([sys.executable, "-m", "runyard", "up", "--labels", "oops",
                          "--port", "0"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1 and "labels: expected key=value" in bad.stderr
    assert "Traceback" not in bad.stderr
