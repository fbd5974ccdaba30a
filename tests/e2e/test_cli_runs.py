"""The run and worker commands in real ``python -m runyard`` subprocesses against a real server."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..support.live_server import free_port
from ..support.sim_worker import SimWorker, submit


def cli(server: Any, *args: str, token: str | None = "admin", env: dict[str, str] | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``runyard ARGS`` with RUNYARD_SERVER / RUNYARD_TOKEN in the environment."""
    full = {**os.environ, "RUNYARD_SERVER": server.url if hasattr(server, "url") else server,
            "COLUMNS": "200", **(env or {})}
    if token is not None:
        full["RUNYARD_TOKEN"] = server.admin_token if token == "admin" else token
    return subprocess.run([sys.executable, "-m", "runyard", *args], capture_output=True,
                          text=True, env=full, timeout=timeout, stdin=subprocess.DEVNULL)


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr}"
    return proc.stdout


def one_line_error(proc: subprocess.CompletedProcess[str], code: int) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_submit_ls_show(sqlite_server: Any) -> None:
    bp = {"name": "mlp", "command": ["python", "train.py", "--config", "{config_file}"],
          "config_schema": {"type": "object", "required": ["lr"],
                            "properties": {"lr": {"type": "number", "exclusiveMinimum": 0},
                                           "opt": {"type": "object"}}}}
    r = httpx.post(f"{sqlite_server.url}/v1/blueprints", json=bp,
                   headers=sqlite_server.headers(), timeout=10)
    assert r.status_code == 201, r.text

    a = json.loads(ok(cli(sqlite_server, "submit", "--command", "python train.py --lr 0.1",
                          "--name", "cmd-run", "--project", "p", "--min-ram-gib", "1",
                          "--priority", "3", "--label", "zone=eu", "--json")))
    assert a["status"] == "queued" and a["command"] == ["python", "train.py", "--lr", "0.1"]
    assert a["constraints"]["min_ram_gib"] == 1 and a["constraints"]["labels"] == {"zone": "eu"}
    assert a["priority"] == 3 and a["project"] == "p"
    b = json.loads(ok(cli(sqlite_server, "submit", "--json", "--", "python", "-c",
                          "print('--x')")))
    assert b["command"] == ["python", "-c", "print('--x')"] and b["name"] == "python"
    c = json.loads(ok(cli(sqlite_server, "submit", "mlp", "--config", "lr=0.5",
                          "--config", "opt.beta=0.9", "--json")))
    assert c["blueprint"] == "mlp" and c["config"] == {"lr": 0.5, "opt": {"beta": 0.9}}
    assert "submitted run" in ok(cli(sqlite_server, "submit", "mlp", "--config", "lr=1"))
    assert ok(cli(sqlite_server, "submit", "mlp", "--config", "lr=1", "--validate")
              ).strip() == "mlp: valid"

    bad = cli(sqlite_server, "submit", "mlp", "--config", "lr=-1")
    assert "config.lr" in one_line_error(bad, 1)
    assert "exactly one" in one_line_error(cli(sqlite_server, "submit"), 2)
    assert "exactly one" in one_line_error(
        cli(sqlite_server, "submit", "mlp", "--command", "x"), 2)

    listed = json.loads(ok(cli(sqlite_server, "ls", "--json")))
    assert len(listed["items"]) == 4 and listed["next_after_id"] is None
    page = json.loads(ok(cli(sqlite_server, "ls", "--limit", "3", "--json")))
    assert len(page["items"]) == 3 and page["next_after_id"] is not None
    every = json.loads(ok(cli(sqlite_server, "ls", "--limit", "3", "--all", "--json")))
    assert [i["id"] for i in every["items"]] == [i["id"] for i in listed["items"]]
    named = json.loads(ok(cli(sqlite_server, "ls", "--name", "CMD%", "--json")))
    assert [i["id"] for i in named["items"]] == [a["id"]]
    table = ok(cli(sqlite_server, "ls", "--status", "queued,running", "--project", "p"))
    assert "cmd-run" in table and "queued" in table and "python" not in table
    assert "--status" in one_line_error(cli(sqlite_server, "ls", "--status", "done"), 2)

    shown = json.loads(ok(cli(sqlite_server, "show", a["id"], "--json")))
    assert shown["run"]["id"] == a["id"] and shown["events"][0]["status"] == "queued"
    assert shown["explain"]["summary"] == "no worker is registered yet"
    text = ok(cli(sqlite_server, "show", a["id"]))
    assert a["id"] in text and "no worker is registered yet" in text


def test_progress_logs_metrics_watch_workers(sqlite_server: Any) -> None:
    run = submit(sqlite_server, "trainer")
    worker = SimWorker(sqlite_server, host_id="gpu-box", ram_gib=0.5)
    queued = submit(sqlite_server, "big", constraints={"min_ram_gib": 64})
    try:
        worker.claim()
        worker.heartbeat(running=True)
        worker.progress(25, 100, epoch=1.0, total_epochs=4, metrics={"loss": 0.25})
        worker.metrics("loss", [1.0, 0.5, "NaN", 0.25])
        worker.metrics("acc", [0.5, 0.75])
        worker.log("line 1\nline 2\n")
        worker.log("warning!\n", stream="stderr")
        with worker.keepalive():
            check_reads(sqlite_server, run, queued)
        worker.complete()
        assert "gpu-box: removed" in ok(cli(sqlite_server, "workers", "rm", "gpu-box"))
        assert json.loads(ok(cli(sqlite_server, "workers", "--json")))["items"] == []
        done = ok(cli(sqlite_server, "watch", run["id"]))  # ends at once: the run has ended
        assert "completed" in done
        assert ok(cli(sqlite_server, "logs", run["id"], "-f", "--interval", "0.1")
                  ) == "line 1\nline 2\n"
    finally:
        worker.close()


def check_reads(sqlite_server: Any, run: dict[str, Any], queued: dict[str, Any]) -> None:
    """Every read command while the run is live."""
    assert ok(cli(sqlite_server, "logs", run["id"])) == "line 1\nline 2\n"
    assert ok(cli(sqlite_server, "logs", run["id"], "--stderr", "--attempt", "1")
              ) == "warning!\n"
    logged = json.loads(ok(cli(sqlite_server, "logs", run["id"], "--json")))
    assert logged["data"] == "line 1\nline 2\n" and logged["next_offset"] == 14

    rows = list(csv.DictReader(io.StringIO(ok(cli(sqlite_server, "metrics", run["id"],
                                                  "--csv")))))
    assert [(r["tag"], r["step"]) for r in rows] == [
        ("acc", "0"), ("acc", "1"), ("loss", "0"), ("loss", "1"), ("loss", "2"),
        ("loss", "3")] or [(r["tag"], r["step"]) for r in rows] == [
        ("loss", "0"), ("loss", "1"), ("loss", "2"), ("loss", "3"), ("acc", "0"),
        ("acc", "1")]
    assert {r["value"] for r in rows if r["tag"] == "loss"} == {"1.0", "0.5", "NaN", "0.25"}
    loss = json.loads(ok(cli(sqlite_server, "metrics", run["id"], "--tag", "loss",
                             "--json")))
    assert [p["step"] for p in loss["items"]] == [0, 1, 2, 3]
    assert loss["items"][2]["value"] == "NaN"
    tags = json.loads(ok(cli(sqlite_server, "metrics", run["id"], "--json")))
    assert {t["tag"]: t["count"] for t in tags["items"]} == {"loss": 4, "acc": 2}
    series = list(csv.DictReader(io.StringIO(ok(cli(
        sqlite_server, "metrics", run["id"], "--tag", "acc", "--points", "2", "--csv")))))
    assert series[0]["step"] == "0" and series[-1]["last"] == "0.75"
    assert "--points needs --tag" in one_line_error(
        cli(sqlite_server, "metrics", run["id"], "--points", "3"), 2)

    frame = ok(cli(sqlite_server, "watch", run["id"], "--once"))
    assert "25/100" in frame and "loss=0.25" in frame and "25%" in frame
    snap = json.loads(ok(cli(sqlite_server, "watch", "--once", "--json")))
    assert {i["id"] for i in snap["items"]} == {run["id"], queued["id"]}
    table = ok(cli(sqlite_server, "ls"))
    assert "25%" in table and "gpu-box" in table

    explained = ok(cli(sqlite_server, "show", queued["id"]))
    assert "gpu-box" in explained and "ram" in explained  # which constraint fails where

    workers = json.loads(ok(cli(sqlite_server, "workers", "--json")))
    assert [w["host_id"] for w in workers["items"]] == ["gpu-box"]
    assert "gpu-box" in ok(cli(sqlite_server, "workers"))
    assert "drained" in ok(cli(sqlite_server, "workers", "drain", "gpu-box"))
    assert json.loads(ok(cli(sqlite_server, "workers", "--json")))["items"][0]["drained"]
    ok(cli(sqlite_server, "workers", "resume", "gpu-box"))
    assert one_line_error(cli(sqlite_server, "workers", "drain", "nope"), 1)
    busy = one_line_error(cli(sqlite_server, "workers", "rm", "gpu-box"), 1)
    assert run["id"] in busy and "active attempts" in busy


def test_stop_wait_and_lifecycle_exit_codes(sqlite_server: Any) -> None:
    run = submit(sqlite_server, "victim")
    rid = run["id"]
    worker = SimWorker(sqlite_server)
    try:
        worker.claim()
        worker.heartbeat(running=True)
        stopped = json.loads(ok(cli(sqlite_server, "stop", rid, "--grace", "5", "--json")))
        assert stopped["status"] == "stopping"
        worker.fail(exit_code=-15, reason="stopped")
    finally:
        worker.close()
    waited = cli(sqlite_server, "wait", rid, "--json")
    assert waited.returncode == 1 and json.loads(waited.stdout)["status"] == "stopped"
    assert "stopped" in ok(cli(sqlite_server, "wait", rid, "--until", "stopped,failed"))

    restarted = json.loads(ok(cli(sqlite_server, "restart", rid, "--min-ram-gib", "2",
                                  "--json")))
    assert restarted["status"] == "queued" and restarted["constraints"]["min_ram_gib"] == 2
    slow = cli(sqlite_server, "wait", rid, "--timeout", "0.5", "--interval", "0.1")
    assert "still queued" in one_line_error(slow, 1)
    assert "cancelled" in ok(cli(sqlite_server, "cancel", rid))
    conflict = one_line_error(cli(sqlite_server, "cancel", rid), 1)
    assert "cancelled" in conflict
    assert json.loads(ok(cli(sqlite_server, "requeue", rid, "--json")))["status"] == "queued"
    assert "--yes" in one_line_error(cli(sqlite_server, "rm", rid), 2)
    ok(cli(sqlite_server, "cancel", rid))
    assert json.loads(ok(cli(sqlite_server, "rm", rid, "--yes", "--json"))) == {
        "id": rid, "deleted": True}
    assert rid in one_line_error(cli(sqlite_server, "show", rid), 1)


def test_errors_are_one_line_with_exit_codes(sqlite_server: Any, tmp_path: Path) -> None:
    missing = one_line_error(cli(sqlite_server, "show", "no-such-run"), 1)
    assert missing.startswith("runyard: ") and "no-such-run" in missing
    assert one_line_error(cli(sqlite_server, "stop", "no-such-run"), 1)
    usage = cli(sqlite_server, "ls", "--bogus")
    assert usage.returncode == 2 and "Traceback" not in usage.stderr and "--bogus" in usage.stderr
    assert cli(sqlite_server, "stop").returncode == 2  # missing RUN

    down = cli(f"http://127.0.0.1:{free_port()}", "ls", token=None)
    assert "cannot reach the server" in one_line_error(down, 1)
    down_json = cli(f"http://127.0.0.1:{free_port()}", "show", "x", "--json", token=None)
    assert "cannot reach the server" in one_line_error(down_json, 1)
    assert down_json.stdout == ""

    denied = one_line_error(cli(sqlite_server, "ls", token="not-a-real-token-at-all"), 1)
    assert "runyard: " in denied

    # No token given: a local server's admin-token file in the data dir is used.
    data = tmp_path / "data"
    data.mkdir()
    env = {"RUNYARD_DATA_DIR": str(data)}
    assert one_line_error(cli(sqlite_server, "ls", token=None, env=env), 1)
    (data / "admin-token").write_text(sqlite_server.admin_token + "\n")
    assert json.loads(ok(cli(sqlite_server, "ls", "--json", token=None, env=env)))["items"] == []
    # ...and the --server option beats the environment.
    other = cli(f"http://127.0.0.1:{free_port()}", "ls", "--server", sqlite_server.url,
                "--json", token=None, env=env)
    assert json.loads(ok(other))["items"] == []


@pytest.mark.parametrize("args", [["--help"], ["submit", "--help"], ["workers", "--help"]])
def test_help_exits_zero(args: list[str]) -> None:
    proc = cli("http://127.0.0.1:1", *args, token=None)
    assert proc.returncode == 0 and "Usage" in proc.stdout


def test_watch_follows_the_event_stream(sqlite_server: Any) -> None:
    """With a refresh interval far longer than the test, every change still shows at once:
    watch learns of it from the server's event stream."""
    run = submit(sqlite_server, "streamed")
    worker = SimWorker(sqlite_server, host_id="stream-box")
    env = {**os.environ, "RUNYARD_SERVER": sqlite_server.url,
           "RUNYARD_TOKEN": sqlite_server.admin_token}
    proc = subprocess.Popen([sys.executable, "-m", "runyard", "watch", run["id"], "--json",
                             "--interval", "120"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    lines: list[dict[str, Any]] = []

    def next_line() -> dict[str, Any]:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, f"watch ended early: {proc.stderr.read() if proc.stderr else ''}"
        lines.append(json.loads(line))
        return lines[-1]

    try:
        assert next_line()["status"] == "queued"
        worker.claim()  # at once: what happens while the stream connects is not lost
        worker.heartbeat(running=True)
        worker.progress(40, 100, metrics={"loss": 0.4})
        t0 = time.monotonic()
        while not (lines[-1]["status"] == "running" and lines[-1].get("progress")):
            next_line()
        assert time.monotonic() - t0 < 30
        assert lines[-1]["progress"]["step"] == 40
        worker.complete()
        while lines[-1]["status"] != "completed":
            next_line()
        assert proc.wait(30) == 0
        assert time.monotonic() - t0 < 60  # far sooner than one 120 s refresh
    finally:
        if proc.poll() is None:
            proc.kill()
        worker.close()
