"""Rules end to end: a real server, a real agent, real training processes (docs/rules.md).

A NaN loss stops its run (reason ``rule``, not retried), a flat validation loss stops its run
through a plateau rule, a ``log`` rule with ``no_retry`` keeps an out-of-memory run from
being retried, and a project's NaN rule stops a run started by hand in HTTP mode.
"""

from __future__ import annotations

import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from runyard import sdk
from runyard.sdk import settings

from ..support.agents import AgentProc, Api
from ..support.live_server import LiveServer

pytestmark = pytest.mark.timeout(180)

#: A trainer driven by its config: ``loss`` falls, then becomes NaN from ``nan_at``;
#: ``val_loss`` falls, then stays flat from ``flat_at``; ``oom`` prints the CUDA message and
#: exits 1 at once. It writes the protocol files by hand and runs until stopped.
TRAINER = textwrap.dedent('''
    import json, math, os, sys, time
    cfg = json.load(open(os.environ["RUNYARD_CONFIG_FILE"]))
    if cfg.get("oom"):
        print("loading model", flush=True)
        sys.stderr.write("RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB\\n")
        sys.exit(1)
    nan_at, flat_at = cfg.get("nan_at"), cfg.get("flat_at")
    with open(os.environ["RUNYARD_METRICS_FILE"], "a") as out:
        for step in range(int(cfg.get("steps", 100000))):
            loss = "NaN" if nan_at is not None and step >= nan_at else 1.0 / (step + 1)
            val = 0.5 if flat_at is not None and step >= flat_at else 2.0 - step * 0.05
            out.write(json.dumps({"step": step, "tag": "loss", "value": loss}) + "\\n")
            out.write(json.dumps({"step": step, "tag": "val_loss", "value": val}) + "\\n")
            out.flush()
            time.sleep(float(cfg.get("sleep", 0.02)))
''')


@pytest.fixture
def server(own_server: LiveServer) -> LiveServer:
    """The test's own server (tests/e2e/conftest.py)."""
    return own_server


def _hits(api: Api, run_id: str) -> list[dict[str, Any]]:
    return [e["details"] for e in api.events(run_id) if e["kind"] == "rule"]


def test_rules_stop_and_keep_from_retrying_real_runs(tmp_path: Path, server: LiveServer,
                                                      api: Api) -> None:
    script = tmp_path / "trainer.py"
    script.write_text(TRAINER)
    nan = api.submit("nan", script, {"nan_at": 50}, max_attempts=3, rules=[
        {"name": "diverged", "when": "nan", "tag": "loss", "then": ["stop", "no_retry"]}])
    flat = api.submit("flat", script, {"flat_at": 20}, max_attempts=3, rules=[
        {"name": "flat", "when": "plateau", "tag": "val_loss", "patience": 5,
         "min_delta": 0.001, "then": ["stop"]}])
    oom = api.submit("oom", script, {"oom": True}, max_restarts_on_errors=2, rules=[
        {"name": "oom", "when": "log", "pattern": "CUDA out of memory",
         "then": ["no_retry"]}])
    control = api.submit("oom-control", script, {"oom": True}, max_restarts_on_errors=1)
    agent = AgentProc(server, api.worker_token(), "box", tmp_path / "work", slots=4,
                      stop_grace_s=5)
    try:
        run = api.wait(nan, {"stopped", "failed", "completed"}, timeout=90)
        assert (run["status"], run["termination_reason"]) == ("stopped", "rule"), run
        assert run["attempt"] == 1 and run["rule_hits"] == 1
        [hit] = _hits(api, nan)
        assert (hit["rule"], hit["tag"], hit["step"], hit["value"]) == ("diverged", "loss",
                                                                        50, "NaN")
        stopping = [e for e in api.events(nan) if e["status"] == "stopping"]
        assert stopping[0]["details"]["intent"] == "rule"
        assert stopping[0]["details"]["rule"] == "diverged"

        run = api.wait(flat, {"stopped", "failed", "completed"}, timeout=90)
        assert (run["status"], run["termination_reason"]) == ("stopped", "rule"), run
        [hit] = _hits(api, flat)
        # Flat from step 20 (best 0.5 there: 2.0 - 19 * 0.05 = 1.05 before): five
        # evaluations without improvement end at step 25.
        assert (hit["step"], hit["best"], hit["evaluations_without_improvement"]) == (25, 0.5,
                                                                                      5)

        run = api.wait(oom, {"failed", "completed"}, timeout=60)
        assert run["status"] == "failed" and run["attempt"] == 1, run
        assert _hits(api, oom)[0]["line"].startswith("RuntimeError: CUDA out of memory")
        assert "retries forbidden by a rule" in [
            e["details"].get("decision") for e in api.events(oom) if e["status"] == "failed"]
        # Without the rule the same failure is retried.
        run = api.wait(control, lambda r: r["status"] == "failed" and r["attempt"] == 2,
                       timeout=60)
    finally:
        agent.stop()


def test_a_project_rule_stops_a_run_started_by_hand(tmp_path: Path, server: LiveServer,
                                                   api: Api) -> None:
    resp = api.http.post("/v1/rules", json={"project": "notebooks", "name": "diverged",
                                            "when": "nan", "tag": "loss", "then": ["stop"]})
    assert resp.status_code == 201, resp.text
    settings.reset()
    env = {"RUNYARD_SERVER": server.url, "RUNYARD_TOKEN": server.admin_token,
           "RUNYARD_DATA_DIR": str(tmp_path / "data"), "RUNYARD_SYS_INTERVAL_S": "0"}
    try:
        with sdk.start_run(name="by-hand", project="notebooks", env=env,
                           handle_sigterm=False) as run:
            assert run.mode == "http"
            deadline = time.monotonic() + 60
            step = 0
            while not run.should_stop and time.monotonic() < deadline:
                run.log({"loss": float("nan") if step >= 50 else 1.0 / (step + 1)}, step=step)
                step += 1
                time.sleep(0.01)
            assert run.should_stop, "the rule's stop never reached the run"
    finally:
        settings.reset()
    got = api.run(run.run_id)
    assert (got["status"], got["termination_reason"]) == ("stopped", "rule"), got
    [hit] = _hits(api, run.run_id)
    assert (hit["rule"], hit["source"], hit["step"]) == ("diverged", "project", 50)
