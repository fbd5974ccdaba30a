"""Executors over HTTP: Slurm run fields (launcher, slurm options, nodes), bad input, the
placement an executor records, the workers listing and explain (docs/executors.md)."""

from __future__ import annotations

from typing import Any

import pytest

from runyard import slurm_options

from ..support.server_api import Api, admin, error_of


@pytest.fixture
def api(app_server):  # type: ignore[no-untyped-def]
    client = admin(app_server)
    yield client
    client.close()


@pytest.fixture(scope="module")
def shared(shared_app):  # type: ignore[no-untyped-def]
    client = admin(shared_app)
    yield client
    client.close()


def test_a_slurm_run_keeps_its_fields_and_blueprint_defaults(api: Api) -> None:
    api.ok("POST", "/v1/blueprints", 201, json={
        "name": "ddp", "command": ["python", "train.py"], "launcher": "torchrun",
        "nodes": 2, "gpus_per_node": 4,
        "slurm": {"partition": "gpu", "account": "lab", "time_limit": "01:30:00",
                  "sbatch_args": ["--constraint=a100&ib"]}})
    run = api.submit("ddp-run", blueprint="ddp", command=None, executor="slurm",
                     slurm={"qos": "high", "time_limit": 45})
    got = api.ok("GET", f"/v1/runs/{run['id']}")
    assert got["executor"] == "slurm" and got["launcher"] == "torchrun"
    assert got["slurm"] == {"partition": "gpu", "account": "lab", "qos": "high",
                            "time_limit": 45, "sbatch_args": ["--constraint=a100&ib"]}
    assert got["constraints"]["nodes"] == 2 and got["constraints"]["gpus"] == 4
    assert got["constraints"]["gpus_per_node"] == 4
    assert got["external_id"] is None and got["nodes"] is None
    # The blueprint's Slurm defaults do not reach its runs elsewhere; its constraints do.
    fleet = api.submit("ddp-local", blueprint="ddp", command=None)
    got = api.ok("GET", f"/v1/runs/{fleet['id']}")
    assert got["launcher"] is None and got["slurm"] is None
    assert got["constraints"]["nodes"] == 2
    # A plain slurm run: srun, no options.
    plain = api.submit("plain", executor="slurm")
    assert plain["launcher"] == "srun" and plain["slurm"] is None


@pytest.mark.parametrize("body, field", [
    ({"slurm": {"partition": "gpu"}}, "slurm"),
    ({"launcher": "torchrun"}, "launcher"),
    ({"executor": "slurm", "launcher": "mpirun"}, "launcher"),
    ({"executor": "slurm", "slurm": {"partition": "gpu; rm -rf /"}}, "slurm.partition"),
    ({"executor": "slurm", "slurm": {"account": ""}}, "slurm.account"),
    ({"executor": "slurm", "slurm": {"qos": 3}}, "slurm.qos"),
    ({"executor": "slurm", "slurm": {"time_limit": 0}}, "slurm.time_limit"),
    ({"executor": "slurm", "slurm": {"time_limit": "90 minutes"}}, "slurm.time_limit"),
    ({"executor": "slurm", "slurm": {"time_limit": "1:61:00"}}, "slurm.time_limit"),
    ({"executor": "slurm", "slurm": {"time_limit": True}}, "slurm.time_limit"),
    ({"executor": "slurm", "slurm": {"nodes": 2}}, "slurm.nodes"),
    ({"executor": "slurm", "slurm": {"sbatch_args": "--exclusive"}}, "slurm.sbatch_args"),
    ({"executor": "slurm", "slurm": {"sbatch_args": ["--uid=0"]}}, "slurm.sbatch_args[0]"),
    ({"executor": "slurm", "slurm": {"sbatch_args": ["--exclusive", "--chdir=/home/bob"]}},
     "slurm.sbatch_args[1]"),
    ({"executor": "slurm", "slurm": {"sbatch_args": ["--export=ALL,RUNYARD_SERVER=x"]}},
     "slurm.sbatch_args[0]"),
    ({"executor": "slurm", "slurm": {"sbatch_args": ["--output=/tmp/x"]}},
     "slurm.sbatch_args[0]"),
    ({"executor": "slurm", "slurm": {"sbatch_args": ["-o", "/tmp/x"]}},
     "slurm.sbatch_args[0]"),
    ({"executor": "slurm", "slurm": {"sbatch_args": ["--job-name=other"]}},
     "slurm.sbatch_args[0]"),
    ({"executor": "slurm", "slurm": {"sbatch_args": ["--constraint=a b"]}},
     "slurm.sbatch_args[0]"),
    ({"executor": "slurm", "slurm": {"sbatch_args": ["--constraint=x\n#SBATCH --uid=0"]}},
     "slurm.sbatch_args[0]"),
    ({"executor": "slurm", "slurm": {"sbatch_args": ["--constraint"]}},
     "slurm.sbatch_args[0]"),
    ({"executor": "slurm", "slurm": {"sbatch_args": ["--contiguous=yes"]}},
     "slurm.sbatch_args[0]"),
    ({"constraints": {"nodes": 0}}, "constraints.nodes"),
    ({"constraints": {"nodes": 1.5}}, "constraints.nodes"),
    ({"constraints": {"nodes": "2"}}, "constraints.nodes"),
    ({"constraints": {"gpus_per_node": -1}}, "constraints.gpus_per_node"),
    ({"constraints": {"gpus": 2, "gpus_per_node": 4}}, "constraints.gpus_per_node"),
])
def test_bad_executor_fields_are_refused_naming_the_field(shared: Api, body: dict[str, Any],
                                                          field: str) -> None:
    before = len(shared.ok("GET", "/v1/runs", params={"limit": 1000})["items"])
    r = shared.post("/v1/runs", {"name": "bad", "command": ["true"], **body})
    assert r.status_code == 422, r.text
    assert error_of(r)["field"] == field, r.text
    assert len(shared.ok("GET", "/v1/runs", params={"limit": 1000})["items"]) == before


def test_bad_blueprint_slurm_options_are_refused(shared: Api) -> None:
    r = shared.post("/v1/blueprints", {"name": "bad-bp", "command": ["x"],
                                       "slurm": {"sbatch_args": ["--uid=0"]}})
    assert r.status_code == 422 and error_of(r)["field"] == "slurm.sbatch_args[0]", r.text
    r = shared.post("/v1/blueprints", {"name": "bad-bp", "command": ["x"], "launcher": "mpi"})
    assert r.status_code == 422 and error_of(r)["field"] == "launcher", r.text


def test_time_limits_and_sbatch_time() -> None:
    assert slurm_options.time_limit_minutes(90) == 90
    assert slurm_options.time_limit_minutes("01:30:00") == 90
    assert slurm_options.time_limit_minutes("00:00:01") == 1  # rounded up, as Slurm does
    assert slurm_options.time_limit_minutes("2-00:00:00") == 2880
    assert slurm_options.sbatch_time(2881) == "2-00:01:00"


def test_placement_is_recorded_by_the_lease_holder_and_shown(api: Api) -> None:
    worker = Api(api.server, api.token("login-node", "worker", hosts=["box", "login"]))
    run = api.submit("on-slurm", executor="slurm")
    assert worker.claim("box") is None  # a local agent never gets it
    why = api.ok("GET", f"/v1/runs/{run['id']}/explain")
    assert why["summary"] == "no slurm agent is connected"
    got = worker.claim("login", executor="slurm", nodes=2)
    assert got is not None and got["run"]["id"] == run["id"]
    att, lease = got["attempt"]["id"], got["lease"]
    path = f"/v1/attempts/{att}/placement"
    assert worker.ok("POST", path, json={"lease": lease, "external_id": "4242"}) == {
        "external_id": "4242", "nodes": None, "workdir": None, "artifact_store": None}
    assert worker.ok("POST", path, json={"lease": lease, "nodes": ["n1", "n2"]}) == {
        "external_id": "4242", "nodes": ["n1", "n2"], "workdir": None, "artifact_store": None}
    worker.ok("POST", path, json={"lease": lease, "nodes": ["n1", "n2"]})  # no change, no event
    # The directory its process runs in: recorded on the attempt, not an event.
    assert worker.ok("POST", path, json={"lease": lease, "workdir": "/scratch/job"}) == {
        "external_id": "4242", "nodes": ["n1", "n2"], "workdir": "/scratch/job",
        "artifact_store": None}
    shown = api.ok("GET", f"/v1/runs/{run['id']}")
    assert shown["external_id"] == "4242" and shown["nodes"] == ["n1", "n2"]
    assert shown["attempts"][0]["external_id"] == "4242"
    assert shown["attempts"][0]["workdir"] == "/scratch/job" and shown["workdir"] is None
    events = api.ok("GET", f"/v1/runs/{run['id']}/events")["items"]
    assert [e["details"] for e in events if e["kind"] == "placement"] == [
        {"external_id": "4242", "attempt": 1}, {"nodes": ["n1", "n2"], "attempt": 1}]
    (login,) = [w for w in api.ok("GET", "/v1/workers")["items"] if w["host_id"] == "login"]
    assert login["executor"] == "slurm"
    assert login["current"][0]["external_id"] == "4242"
    assert login["current"][0]["nodes"] == ["n1", "n2"]
    (box,) = [w for w in api.ok("GET", "/v1/workers")["items"] if w["host_id"] == "box"]
    assert box["executor"] == "local"
    # Bad values, a wrong lease: refused, nothing changed.
    for body, status, field in (
            ({"lease": lease, "external_id": "12 34"}, 422, "external_id"),
            ({"lease": lease, "external_id": "x" * 201}, 422, "external_id"),
            ({"lease": lease, "nodes": ["ok", "../etc"]}, 422, "nodes[1]"),
            ({"lease": lease, "nodes": "n1"}, 422, "nodes"),
            ({"lease": lease, "extra": 1}, 422, "extra"),
            ({"lease": lease, "workdir": ""}, 422, "workdir"),
            ({"lease": lease, "workdir": "/a\x00b"}, 422, "workdir"),
            ({"lease": lease, "artifact_store": "x" * 2001}, 422, "artifact_store"),
            ({"lease": lease, "workdir": 7}, 422, "workdir"),
            ({"lease": "0" * 32, "external_id": "1"}, 409, None)):
        r = worker.post(path, body)
        assert r.status_code == status, r.text
        if field:
            assert error_of(r)["field"] == field, r.text
    after = api.ok("GET", f"/v1/runs/{run['id']}")
    assert after["external_id"] == "4242" and after["attempts"][0]["workdir"] == "/scratch/job"
    worker.close()


def test_a_manifest_job_on_slurm_is_queued_as_a_slurm_run(api: Api) -> None:
    text = """\
[[blueprints]]
name = "ddp"
command = ["python", "train.py"]
slurm = { account = "lab" }

[[jobs]]
name = "on-slurm"
blueprint = "ddp"
executor = "slurm"
launcher = "torchrun"
nodes = 2
slurm = { partition = "gpu", time_limit = 30 }

[[jobs]]
name = "on-the-fleet"
command = ["python", "train.py", "small"]
"""
    r = api.post("/v1/manifest/reload", {"text": text.replace('executor = "slurm"\n', ""),
                                         "source": "fleet.toml"})
    assert r.status_code == 422, r.text
    assert [(e["line"], e["field"]) for e in error_of(r)["errors"]] == [
        (9, "jobs[0].launcher"), (11, "jobs[0].slurm")]
    assert api.ok("GET", "/v1/runs")["items"] == []  # nothing queued
    api.ok("POST", "/v1/manifest/reload", json={"text": text, "source": "fleet.toml"})
    runs = {r["name"]: r for r in api.ok("GET", "/v1/runs")["items"]}
    slurm_run = api.ok("GET", f"/v1/runs/{runs['on-slurm']['id']}")
    assert (slurm_run["executor"], slurm_run["launcher"]) == ("slurm", "torchrun")
    assert slurm_run["slurm"] == {"partition": "gpu", "account": "lab", "time_limit": 30}
    assert slurm_run["constraints"]["nodes"] == 2
    assert api.ok("GET", f"/v1/runs/{runs['on-the-fleet']['id']}")["executor"] == "agent"
