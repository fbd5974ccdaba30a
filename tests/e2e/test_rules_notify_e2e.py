"""Rules that notify, end to end: a real server, a real agent, real training processes and a
real webhook receiver on 127.0.0.1 (docs/rules.md, docs/notifications.md).

A ``status`` rule tells the team when a run completes: one signed webhook whose body names
the run and ``completed``. A NaN rule with ``["stop", "notify:team"]`` both stops its run
(reason ``rule``, not retried) and tells the team, with the evidence.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..support.agents import AgentProc, Api, write_train_script
from ..support.receiver import Received, Receiver
from ..support.thread_server import ThreadServer
from ..support.ui import wait_until
from .test_rules_e2e import TRAINER

pytestmark = pytest.mark.timeout(180)

SECRET = "the-team-receiver-shares-this-secret"
PUBLIC_URL = "https://runyard.lab.example"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(secret=SECRET) as rec:
        yield rec


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ThreadServer]:
    srv = ThreadServer(tmp_path / "server", stale_after_s=60,
                     public_url=PUBLIC_URL).start()
    yield srv
    srv.stop()


@pytest.fixture
def api(server: ThreadServer, receiver: Receiver) -> Iterator[Api]:
    client = Api(server)
    resp = client.http.post("/v1/channels", json={"name": "team", "kind": "webhook",
                                                  "url": receiver.url, "secret": SECRET})
    assert resp.status_code == 201, resp.text
    yield client
    client.close()


def signed_by_secret(got: Received) -> bool:
    """The receiver-side check of docs/notifications.md, written out here once more."""
    timestamp = got.headers["x-runyard-timestamp"]
    expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + got.body,
                        hashlib.sha256).hexdigest()
    return hmac.compare_digest(f"sha256={expected}", got.headers["x-runyard-signature"])


def deliveries(api: Api, run_id: str) -> list[dict[str, Any]]:
    resp = api.http.get("/v1/notifications", params={"run_id": run_id})
    resp.raise_for_status()
    return list(resp.json()["items"])


def delivered(api: Api, receiver: Receiver, run_id: str) -> tuple[dict[str, Any], Received]:
    """The run's one delivery once it is delivered, and the one request that carried it."""
    def done() -> list[dict[str, Any]] | None:
        items = deliveries(api, run_id)
        return items if items and all(n["status"] != "pending" for n in items) else None
    [row] = wait_until(done, 60, "the run's delivery")
    assert (row["channel"], row["status"], row["attempts"]) == ("team", "delivered", 1), row
    [got] = receiver.requests(row["id"])  # exactly one request for it
    assert got.answered == 200
    return row, got


def test_a_status_rule_notifies_when_a_real_run_completes(
        tmp_path: Path, server: ThreadServer, api: Api, receiver: Receiver) -> None:
    script = write_train_script(tmp_path)
    run_id = api.submit("finishes", script, {"steps": 10, "sleep": 0.02}, rules=[
        {"name": "ended", "when": "status", "status": ["completed", "failed"],
         "then": ["notify:team"]}])
    agent = AgentProc(server, api.worker_token(), "box", tmp_path / "work", slots=1)
    try:
        run = api.wait(run_id, {"completed", "failed", "stopped"}, timeout=90)
        assert run["status"] == "completed", run
        row, got = delivered(api, receiver, run_id)
    finally:
        agent.stop()
    assert row["kind"] == "status"
    assert got.signature_ok is True and signed_by_secret(got)
    body = got.json()
    assert body["delivery"] == row["id"] and body["kind"] == "status"
    assert body["run"]["id"] == run_id and body["run"]["name"] == "finishes"
    assert body["run"]["status"] == "completed"
    assert body["run"]["url"] == f"{PUBLIC_URL}/runs/{run_id}"
    assert (body["details"]["rule"], body["details"]["status"]) == ("ended", "completed")
    # The status changes before completion (queued, running...) are not watched: one hit.
    assert api.run(run_id)["rule_hits"] == 1 and len(deliveries(api, run_id)) == 1


def test_a_nan_rule_stops_its_run_and_notifies(tmp_path: Path, server: ThreadServer, api: Api,
                                              receiver: Receiver) -> None:
    script = tmp_path / "trainer.py"
    script.write_text(TRAINER)
    run_id = api.submit("diverges", script, {"nan_at": 50}, max_attempts=3, rules=[
        {"name": "diverged", "when": "nan", "tag": "loss", "then": ["stop", "notify:team"]}])
    agent = AgentProc(server, api.worker_token(), "box", tmp_path / "work", slots=1,
                      stop_grace_s=5)
    try:
        run = api.wait(run_id, {"stopped", "failed", "completed"}, timeout=90)
        row, got = delivered(api, receiver, run_id)
    finally:
        agent.stop()
    assert (run["status"], run["termination_reason"], run["attempt"]) == ("stopped", "rule", 1)
    assert row["kind"] == "rule"
    assert got.signature_ok is True and signed_by_secret(got)
    body = got.json()
    assert body["run"]["id"] == run_id and body["run"]["name"] == "diverges"
    details = body["details"]
    assert (details["rule"], details["tag"], details["step"], details["value"]) == (
        "diverged", "loss", 50, "NaN")
    assert details["notify"] == ["team"] and details["actions"] == ["stop", "notify:team"]
