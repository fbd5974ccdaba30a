"""End to end, when things break: a host dies, the server restarts, a worker freezes."""

from __future__ import annotations

import collections
import datetime
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..support.agents import (
    AgentProc,
    Api,
    kill_quietly,
    pid_alive,
    training_pid,
    write_train_script,
)
from ..support.live_server import LiveServer


@pytest.fixture
def orphans() -> Iterator[list[int]]:
    """Training pids a test leaves behind on purpose (their agent was killed)."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        kill_quietly(pid)


def _epoch(iso: str) -> float:
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


#: The lease of the tests that lose one on purpose: long enough that an agent which is meant to
#: keep its lease (a heartbeat every STALE/4) keeps it through a pause of a loaded machine.
STALE = 8


def _start(tmp_path: Path, stale_after_s: float) -> tuple[LiveServer, Api]:
    server = LiveServer(tmp_path / "server", stale_after_s=stale_after_s).start()
    return server, Api(server)


def test_killed_agent_run_is_lost_requeued_and_finished_elsewhere(
        tmp_path: Path, agents: list[AgentProc], orphans: list[int]) -> None:
    server, api = _start(tmp_path, STALE)
    try:
        script = write_train_script(tmp_path)
        rid = api.submit("victim", script, {"steps": 30, "sleep": 0.1,
                                            "sleep_by_attempt": {"2": 0.01}})
        token = api.worker_token(hosts=["doomed", "survivor"])  # one token, two hosts
        first = AgentProc(server, token, "doomed", tmp_path / "w1")
        agents.append(first)
        api.wait(rid, lambda r: r["status"] == "running" and r.get("progress") is not None)
        orphans.append(training_pid(first, rid, 1))
        time.sleep(1.0)  # a few heartbeats, so the lease was just renewed
        first.signal(signal.SIGKILL)
        killed_at = time.time()
        first.wait(30)
        agents.append(AgentProc(server, token, "survivor", tmp_path / "w2"))
        run = api.wait(rid, {"completed"}, timeout=60)
        assert run["host_id"] == "survivor" and run["attempt"] == 2
        events = [e for e in api.events(rid) if e["kind"] == "status"]
        lost = [e for e in events if e["details"].get("reason") == "lost"]
        assert [(e["status"], e["attempt"]) for e in lost] == [("queued", 1)]
        # Not before the lease lapsed: the last heartbeat came at most stale/4 before the kill.
        # (The bound above is loose: a loaded machine can delay the server's sweep by seconds.)
        waited = _epoch(lost[0]["at"]) - killed_at
        assert STALE * 0.75 - 0.3 <= waited <= STALE + 30, waited
        assert events[-1]["status"] == "completed" and events[-1]["attempt"] == 2
        # At each step the newest attempt's point counts; attempt 1's points are kept.
        assert collections.Counter(p["attempt"] for p in api.metrics(rid)) == {2: 30}
        assert len(api.metrics(rid, attempt=1)) >= 1
    finally:
        api.close()
        server.stop()


def test_server_restart_mid_run_loses_and_duplicates_no_metric(
        tmp_path: Path, agents: list[AgentProc]) -> None:
    server, api = _start(tmp_path, 20)
    try:
        script = write_train_script(tmp_path)
        steps, per = 60, 20
        rid = api.submit("steady", script, {"steps": steps, "sleep": 0.05,
                                            "points_per_step": per})
        agent = AgentProc(server, api.worker_token(), "box", tmp_path / "work")
        agents.append(agent)
        api.wait(rid, lambda r: r["status"] == "running" and r.get("progress") is not None)
        server.kill()
        time.sleep(1.5)  # training goes on; the agent spools what it cannot send
        server.start()
        run = api.wait(rid, {"completed", "failed"}, timeout=40)
        assert run["status"] == "completed", run
        points = api.metrics(rid)
        keys = collections.Counter((p["tag"], p["step"]) for p in points)
        assert len(points) == steps * per
        assert set(keys.values()) == {1}
        assert api.http.get(f"/v1/runs/{rid}/progress").json()["snapshot"]["seq"] == steps
        out = api.logs(rid)
        assert out.count("done\n") == 1 and out.startswith("pid ")
        assert "spooling" in agent.log()
    finally:
        api.close()
        server.stop()


def test_a_server_outage_longer_than_the_lease_costs_no_run(
        tmp_path: Path, agents: list[AgentProc]) -> None:
    """The server is killed for longer than ``stale_after_s`` while its agent trains on:
    restarted on the same data, it gives the lease a fresh grace, and the run finishes as
    its first attempt with every point once."""
    server, api = _start(tmp_path, STALE)
    try:
        script = write_train_script(tmp_path)
        steps = 80
        rid = api.submit("outlived", script, {"steps": steps, "sleep": 0.1})
        agent = AgentProc(server, api.worker_token(), "box", tmp_path / "work")
        agents.append(agent)
        api.wait(rid, lambda r: r["status"] == "running" and r.get("progress") is not None)
        server.kill()
        time.sleep(STALE * 1.5)  # the lease lapses while the server is away
        server.start()
        run = api.wait(rid, {"completed", "failed", "lost"}, timeout=60)
        assert run["status"] == "completed" and run["attempt"] == 1, run
        kinds = [(e["kind"], e["status"]) for e in api.events(rid)]
        assert ("status", "queued") in kinds and kinds.count(("status", "running")) == 1
        assert all(api.events(rid)[i]["attempt"] <= 1 for i in range(len(kinds)))
        keys = collections.Counter((p["tag"], p["step"]) for p in api.metrics(rid))
        assert set(keys.values()) == {1}
    finally:
        api.close()
        server.stop()


def test_frozen_agent_is_fenced_off_and_abandons_cleanly(
        tmp_path: Path, agents: list[AgentProc]) -> None:
    server, api = _start(tmp_path, STALE)
    try:
        script = write_train_script(tmp_path)
        rid = api.submit("fenced", script, {"steps": 200, "sleep": 0.1,
                                            "sleep_by_attempt": {"2": 0.005}})
        token = api.worker_token(hosts=["frozen", "other"])  # one token, two hosts
        frozen = AgentProc(server, token, "frozen", tmp_path / "w1")
        agents.append(frozen)
        api.wait(rid, lambda r: r["status"] == "running" and r.get("progress") is not None)
        pid = training_pid(frozen, rid, 1)
        frozen.signal(signal.SIGSTOP)
        api.wait(rid, lambda r: r["attempt"] == 1 and r["status"] == "queued", timeout=45)
        other = AgentProc(server, token, "other", tmp_path / "w2")
        agents.append(other)
        api.wait(rid, lambda r: r["attempt"] == 2 and r["status"] == "running", timeout=45)
        frozen.signal(signal.SIGCONT)
        deadline = time.monotonic() + 45
        while "abandoned" not in frozen.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "lease lost" in frozen.log() and "abandoned" in frozen.log()
        assert not pid_alive(pid)  # its training process was stopped
        run = api.wait(rid, {"completed", "failed"}, timeout=30)
        assert run["status"] == "completed" and run["host_id"] == "other"
        ends = [e["details"] for e in api.events(rid)
                if e["kind"] == "status" and e["status"] in ("completed", "failed")]
        assert [d["worker"] for d in ends] == ["other"]  # the frozen one reported nothing
        assert frozen.proc.poll() is None  # the agent itself lives on, claiming again
    finally:
        api.close()
        server.stop()


def test_lease_lost_during_an_outage_stops_the_process_and_drops_the_spool(
        tmp_path: Path, agents: list[AgentProc]) -> None:
    server, api = _start(tmp_path, STALE)
    try:
        script = write_train_script(tmp_path)
        rid = api.submit("outage", script, {"steps": 300, "sleep": 0.05,
                                            "sleep_by_attempt": {"2": 0.005}})
        first = AgentProc(server, api.worker_token(), "first", tmp_path / "w1")
        agents.append(first)
        api.wait(rid, lambda r: r["status"] == "running" and r.get("progress") is not None)
        pid = training_pid(first, rid, 1)
        server.kill()
        deadline = time.monotonic() + 30
        while "spooling" not in first.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "spooling" in first.log()  # training goes on, the agent keeps what it reads
        # Paused across the restart so the server's sweep (not a late heartbeat) decides.
        first.signal(signal.SIGSTOP)
        server.start()
        api.wait(rid, lambda r: r["status"] == "queued", timeout=45)
        stored_before = len(api.metrics(rid))
        first.signal(signal.SIGCONT)
        deadline = time.monotonic() + 45
        while "abandoned" not in first.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "lease lost" in first.log() and "abandoned" in first.log()
        assert not pid_alive(pid)
        assert len(api.metrics(rid)) == stored_before  # the spool was refused, not replayed
        # The agent lives on: it claims the requeued run again, as a new attempt.
        run = api.wait(rid, {"completed", "failed"}, timeout=30)
        assert run["status"] == "completed" and run["attempt"] == 2
        ends = [e for e in api.events(rid) if e["kind"] == "status"
                and e["status"] in ("completed", "failed")]
        assert [e["attempt"] for e in ends] == [2]  # attempt 1 was never reported
        assert collections.Counter(p["attempt"] for p in api.metrics(rid)) == {2: 300}
        assert len(api.metrics(rid, attempt=1)) >= 1  # kept, behind the newer attempt
    finally:
        api.close()
        server.stop()


def test_restarted_agent_stops_what_its_killed_predecessor_left_running(
        tmp_path: Path, agents: list[AgentProc], orphans: list[int]) -> None:
    server, api = _start(tmp_path, STALE)
    try:
        script = write_train_script(tmp_path)
        rid = api.submit("orphaned", script, {"steps": 300, "sleep": 0.1,
                                              "sleep_by_attempt": {"2": 0.005}})
        token = api.worker_token()
        first = AgentProc(server, token, "box", tmp_path / "work")
        agents.append(first)
        api.wait(rid, lambda r: r["status"] == "running" and r.get("progress") is not None)
        pid = training_pid(first, rid, 1)
        orphans.append(pid)
        first.signal(signal.SIGKILL)
        first.wait(30)
        time.sleep(0.5)
        assert pid_alive(pid)  # its own session: it outlives the agent
        again = AgentProc(server, token, "box", tmp_path / "work")
        agents.append(again)
        deadline = time.monotonic() + 30
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not pid_alive(pid)
        assert f"stopping pid {pid} (run {rid} attempt 1), left running" in again.log()
        run = api.wait(rid, {"completed", "failed"}, timeout=30)  # lost, then requeued
        assert run["status"] == "completed" and run["attempt"] == 2
        assert not list((tmp_path / "work").glob("*/*/process.json"))  # records cleaned up
    finally:
        api.close()
        server.stop()


def test_a_run_that_ended_before_the_agent_was_stopped_is_not_requeued(
        tmp_path: Path, agents: list[AgentProc]) -> None:
    server, api = _start(tmp_path, 30)
    try:
        script = write_train_script(tmp_path)
        rid = api.submit("finished", script, {"steps": 25, "sleep": 0.1, "artifact": "w"})
        agent = AgentProc(server, api.worker_token(), "box", tmp_path / "work")
        agents.append(agent)
        api.wait(rid, lambda r: r["status"] == "running" and r.get("progress") is not None)
        pid = training_pid(agent, rid, 1)
        assert server.proc is not None
        server.proc.send_signal(signal.SIGSTOP)  # the agent's reports hang from now on
        try:
            deadline = time.monotonic() + 20
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not pid_alive(pid)  # training ended on its own, exit 0
            agent.signal(signal.SIGTERM)  # the agent stops while its report is pending
            time.sleep(0.5)
        finally:
            server.proc.send_signal(signal.SIGCONT)
        assert agent.wait(40) == 0
        run = api.wait(rid, {"completed", "failed", "queued"}, timeout=30)
        assert run["status"] == "completed" and run["attempt"] == 1, run
        assert {a["name"] for a in api.http.get(f"/v1/runs/{rid}/artifacts").json()["items"]} \
            == {"artifacts.tar.zst"}
    finally:
        api.close()
        server.stop()
