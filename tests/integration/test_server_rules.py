"""Rules through the HTTP API, in process: project rules and who may add them, run rules on
submit, bad input (422 naming the field, nothing stored), a run's rules and hits shown."""

from __future__ import annotations

from typing import Any

import pytest

from runyard.server import serialize

from ..support.app_server import AppServer
from ..support.server_api import Api, admin, caps, error_of


@pytest.fixture
def op(app_server: AppServer) -> Api:
    return admin(app_server)


def test_project_and_server_rules_and_who_may_add_them(app_server: AppServer, op: Api) -> None:
    alice = Api(app_server, op.token("alice", "user"))
    bob = Api(app_server, op.token("bob", "user"))
    viewer = Api(app_server, op.token("v", "viewer"))
    made = alice.ok("POST", "/v1/rules", 201, json={
        "project": "vision", "name": "flat", "when": "plateau", "tag": "val_loss",
        "patience": 5, "min_delta": "1%", "then": ["stop", "notify:team"]})
    assert made["owner"] == "alice" and made["applies_to"] == "runs of alice in project vision"
    assert made["min_delta"] == "1%" and made["then"] == ["stop", "notify:team"]
    r = alice.post("/v1/rules", {"when": "nan"})
    assert r.status_code == 403 and error_of(r)["field"] == "project"
    server = op.ok("POST", "/v1/rules", 201, json={"when": "status", "status": ["failed"],
                                                     "then": ["notify:ops"]})
    assert server["project"] is None and server["applies_to"] == "every run on the server"
    r = op.post("/v1/rules", {"project": "vision", "name": "flat", "when": "nan"})
    assert r.status_code == 409 and "already" in error_of(r)["message"]
    listed = viewer.ok("GET", "/v1/rules", params={"project": "vision"})["items"]
    assert [x["name"] for x in listed] == ["flat"]
    assert len(viewer.ok("GET", "/v1/rules")["items"]) == 2
    r = bob.request("DELETE", f"/v1/rules/{made['id']}")
    assert r.status_code == 403 and "added by 'alice'" in error_of(r)["message"]
    assert alice.request("DELETE", f"/v1/rules/{made['id']}").status_code == 204
    assert op.request("DELETE", f"/v1/rules/{made['id']}").status_code == 404
    assert op.request("DELETE", f"/v1/rules/{server['id']}").status_code == 204
    assert viewer.ok("GET", "/v1/rules")["items"] == []


@pytest.mark.parametrize("body, field", [
    ({"project": "p", "when": "sometimes"}, "when"),
    ({"project": "p", "when": "log", "pattern": "(unclosed"}, "pattern"),
    ({"project": "p", "when": "log", "pattern": r"(x)\1"}, "pattern"),
    ({"project": "p", "when": "plateau", "tag": "t" * 65}, "tag"),
    ({"project": "p", "when": "threshold", "tag": "x", "op": "=", "value": 1}, "op"),
    ({"project": "p", "when": "nan", "then": ["explode"]}, "then[0]"),
    ({"project": "p", "when": "nan", "color": "red"}, "color"),
    ({"project": "-bad", "when": "nan"}, "project"),
    ('{"project": "p", "when": "nan", "name": "x\\udc80"}', "name"),
])
def test_bad_project_rules_are_refused_naming_the_field(app_server: AppServer, op: Api,
                                                        body: Any, field: str) -> None:
    r = (op.post("/v1/rules", body) if isinstance(body, dict) else
         op.post("/v1/rules", content=body, headers={"Content-Type": "application/json"}))
    assert r.status_code == 422, r.text
    assert error_of(r)["field"] == field
    assert op.ok("GET", "/v1/rules")["items"] == []


@pytest.mark.parametrize("rules, field", [
    ([{"when": "nope"}], "rules[0].when"),
    ([{"when": "nan"}, {"when": "log", "pattern": "("}], "rules[1].pattern"),
    ([{"when": "plateau", "tag": "x" * 100}], "rules[0].tag"),
    ([{"when": "nan", "then": ["stop", "notify:bad channel"]}], "rules[0].then[1]"),
    ("nan loss", "rules"),
])
def test_bad_run_rules_store_no_run(app_server: AppServer, op: Api, rules: Any,
                                    field: str) -> None:
    r = op.post("/v1/runs", {"name": "r", "command": ["true"], "rules": rules})
    assert r.status_code == 422, r.text
    assert error_of(r)["field"] == field
    assert op.ok("GET", "/v1/runs")["items"] == []


def test_a_runs_rules_hits_and_badge(app_server: AppServer, op: Api) -> None:
    bp = {"name": "trainer", "command": ["python", "t.py"],
          "rules": [{"name": "diverged", "when": "nan", "tag": "loss", "then": ["stop"]},
                    {"name": "slow", "when": "runtime", "max_s": 3600}]}
    op.ok("POST", "/v1/blueprints", 201, json=bp)
    op.ok("POST", "/v1/rules", 201, json={"project": "vision", "when": "status",
                                            "status": ["completed"], "name": "done"})
    run = op.submit("r", blueprint="trainer", command=None, project="vision",
                    rules=[{"name": "slow", "when": "runtime", "max_s": 60}])
    assert "rules" not in run and run["rule_hits"] == 0
    got = op.claim()
    assert got is not None and got["run"]["id"] == run["id"]
    detail = op.ok("GET", f"/v1/runs/{run['id']}")
    assert [(r["name"], r["source"]) for r in detail["rules"]] == [
        ("slow", "run"), ("diverged", "blueprint"), ("done", "project")]
    assert detail["rules"][0]["max_s"] == 60
    body = {"attempt_id": got["attempt"]["id"], "lease": got["lease"],
            "rows": [[1, None, {"loss": 0.5}], [2, None, {"loss": "NaN"}]]}
    op.ok("POST", f"/v1/runs/{run['id']}/metrics", json=body)
    detail = op.ok("GET", f"/v1/runs/{run['id']}")
    assert detail["status"] == "stopping" and detail["rule_hits"] == 1
    diverged = detail["rules"][1]
    assert diverged["hits"] == 1 and diverged["last_hit"]["value"] == "NaN"
    at = diverged["last_hit"]["at"]  # ISO, as every time the API shows
    assert isinstance(at, str) and at.endswith("Z") and serialize.parse_time(at, "at")
    beat = op.ok("POST", f"/v1/attempts/{got['attempt']['id']}/heartbeat",
                 json={"lease": got["lease"]})
    assert beat["stop"] and beat["intent"] == "rule"
    listed = op.ok("GET", "/v1/runs", params={"fields": "id,rule_hits"})["items"]
    assert listed == [{"id": run["id"], "rule_hits": 1}]
    assert "rules" not in op.ok("GET", "/v1/runs")["items"][0]
    r = op.get("/v1/runs", params={"fields": "rules"})
    assert r.status_code == 422 and error_of(r)["field"] == "fields"


def test_log_rule_through_the_logs_route(app_server: AppServer, op: Api) -> None:
    run = op.submit("oom", max_restarts_on_errors=3, rules=[
        {"name": "oom", "when": "log", "pattern": "CUDA out of memory", "stream": "stderr",
         "then": ["no_retry"]}])
    got = op.claim(**caps())
    assert got is not None
    att, lease = got["attempt"]["id"], got["lease"]
    chunks = [{"stream": "stdout", "offset": 0, "data": "CUDA out of memory (stdout)\n"}]
    op.ok("POST", f"/v1/attempts/{att}/logs", json={"lease": lease, "chunks": chunks})
    assert op.ok("GET", f"/v1/runs/{run['id']}")["rule_hits"] == 0
    evil = [{"stream": "stderr", "offset": 0, "data": ("a" * 60 + "b\n") * 100},
            {"stream": "stderr", "offset": 6200, "data": "RuntimeError: CUDA out of memory\n"}]
    op.ok("POST", f"/v1/attempts/{att}/logs", json={"lease": lease, "chunks": evil})
    ended = op.ok("POST", f"/v1/attempts/{att}/fail",
                  json={"lease": lease, "reason": "user_error", "exit_code": 1})
    assert ended["status"] == "failed" and ended["rule_hits"] == 1
