"""Valid manifests: parsed shape, blueprint defaults, stable ids, run requests, reload plans."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from runyard import errors, models
from runyard.manifest import (
    Blueprint,
    LineIndex,
    format_path,
    job_key,
    load_manifest,
    parse_config_overrides,
    parse_manifest,
    parse_path,
    plan_reload,
    validate_config,
)

SCHEMA_LINE = (  # one line, as TOML inline tables must be
    'config_schema = { type = "object", required = ["lr"], properties = { lr = { type = "number", '
    'exclusiveMinimum = 0 }, hidden = { type = "integer", minimum = 1 } }, '
    "additionalProperties = false }\n"
)
TEXT = """\
project = "demo"

[[hosts]]
id = "gpu-box"
allow = ["resnet-*", "mlp*"]
slots = 2
labels = { gpu = "a100", rack = 3 }

[[hosts]]
id = "pi"
deny = ["*-large"]

[[blueprints]]
name = "mlp"
command = ["{python}", "train.py", "--config", "{config_file}", "--seed", "{seed}"]
min_ram_gib = 2
max_attempts = 5
labels = { pool = "a" }
""" + SCHEMA_LINE + """

[[jobs]]
name = "mlp-small"
blueprint = "mlp"
config = { lr = 0.01, hidden = 64 }
seed = 0
min_ram_gib = 1
prefer_cuda = true
priority = 3
notes = "first"

[[jobs]]
name = "hello"
project = "other"
command = ["echo", "{name}", "{{literal}}"]
retry_on_exit_codes = [3, 75]
probe_interval_s = 2
"""


def test_parses_hosts_blueprints_and_jobs() -> None:
    m = parse_manifest(TEXT, source="fleet.toml")
    assert m.hosts == [
        models.HostPolicy("gpu-box", allow=("resnet-*", "mlp*"), slots=2,
                          labels={"gpu": "a100", "rack": "3"}),
        models.HostPolicy("pi", deny=("*-large",)),
    ]
    bp = m.blueprint("mlp")
    assert bp.command[1] == "train.py"
    assert bp.defaults == {"min_ram_gib": 2.0, "labels": {"pool": "a"}, "max_attempts": 5}
    assert bp.placeholders == {"python", "config_file", "seed"}
    small = m.job("mlp-small")
    # The job's own keys win; the blueprint's fill the rest.
    assert small.constraints == models.Constraints(prefer_cuda=True, min_ram_gib=1.0,
                                                   labels={"pool": "a"})
    assert (small.max_attempts, small.priority, small.project) == (5, 3, "demo")
    hello = m.job("hello")
    assert hello.blueprint is None and hello.project == "other"
    assert hello.max_attempts == 3 and hello.retry_on_exit_codes == (3, 75)
    with pytest.raises(errors.NotFound):
        m.job("nope")


def test_run_request_has_the_post_runs_shape() -> None:
    m = parse_manifest(TEXT)
    small, hello = m.jobs
    assert small.to_run_request() == {
        "name": "mlp-small", "project": "demo", "version": "", "notes": "first",
        "blueprint": "mlp", "command": None, "config": {"lr": 0.01, "hidden": 64}, "seed": 0,
        "constraints": {"require_cuda": False, "prefer_cuda": True, "gpus": 0,
                        "min_vram_gib": 0.0, "min_ram_gib": 1.0, "min_cpus": 0.0,
                        "allowed_hosts": [], "labels": {"pool": "a"}},
        "priority": 3, "max_attempts": 5, "max_restarts_on_errors": 0,
        "retry_on_exit_codes": [], "probe_interval_s": None, "stall_after_s": 600.0,
        "job_key": small.key,
    }
    req = hello.to_run_request()
    assert req["command"] == ["echo", "{name}", "{{literal}}"] and req["blueprint"] is None
    assert req["probe_interval_s"] == 2.0
    json.dumps(m.to_dict())  # the whole manifest is JSON-ready


def test_job_key_is_sha256_of_documented_canonical_json() -> None:
    small = parse_manifest(TEXT).job("mlp-small")
    doc = {"v": "runyard.job/v1", "blueprint": "mlp", "command": list(small.command),
           "config": {"hidden": 64, "lr": 0.01}, "seed": 0,
           "constraints": small.constraints.to_dict()}
    canon = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    assert small.key == hashlib.sha256(canon.encode()).hexdigest()


@pytest.mark.parametrize(("old", "new", "changes"), [
    ("priority = 3", "priority = 7", False),
    ('notes = "first"', 'notes = "second"', False),
    ('name = "mlp-small"', 'name = "mlp-renamed"', False),
    ("{ lr = 0.01, hidden = 64 }", "{ hidden = 64, lr = 1e-2 }", False),
    ("max_attempts = 5", "max_attempts = 1", False),
    ("{ lr = 0.01, hidden = 64 }", "{ lr = 0.02, hidden = 64 }", True),
    ("seed = 0", "seed = 1", True),
    ("min_ram_gib = 1\n", "min_ram_gib = 4\n", True),
    ('"--seed", "{seed}"]', '"--seed", "{seed}", "--fast"]', True),
    ('labels = { pool = "a" }', 'labels = { pool = "b" }', True),
])
def test_what_changes_a_job_key(old: str, new: str, changes: bool) -> None:
    assert old in TEXT
    before = parse_manifest(TEXT).jobs[0].key
    after = parse_manifest(TEXT.replace(old, new, 1)).jobs[0].key
    assert (before != after) is changes


def test_job_key_function_matches_parsed_jobs() -> None:
    hello = parse_manifest(TEXT).job("hello")
    assert hello.key == job_key(blueprint=None, command=hello.command, config={}, seed=None,
                                constraints=models.Constraints())


def test_render_command_fills_placeholders() -> None:
    m = parse_manifest(TEXT)
    small, hello = m.jobs
    assert small.render_command(python="/venv/bin/python", config_file="/w/c.json") == [
        "/venv/bin/python", "train.py", "--config", "/w/c.json", "--seed", "0"]
    assert hello.render_command() == ["echo", "hello", "{literal}"]
    assert m.blueprint("mlp").render_command(python="py", config_file="c", seed=4)[-1] == "4"
    with pytest.raises(errors.ValidationError, match=r"no value for placeholder \{config_file\}"):
        small.render_command(python="py")
    with pytest.raises(errors.ValidationError, match="unknown placeholder value 'confg'"):
        small.render_command(python="py", config_file="c", confg="x")


def test_validate_config_at_submit_time() -> None:
    bp = parse_manifest(TEXT).blueprint("mlp")
    validate_config(bp, {"lr": 0.5})
    with pytest.raises(errors.ValidationError) as info:
        validate_config(bp, {"lr": -1, "hidden": 1.5, "x": float("inf")})
    assert info.value.http_status == 422
    assert info.value.errors == [
        {"field": "config",
         "message": "Additional properties are not allowed ('x' was unexpected)"},
        {"field": "config.hidden", "message": "1.5 is not of type 'integer'"},
        {"field": "config.lr", "message": "-1 is less than or equal to the minimum of 0"},
        {"field": "config.x", "message": "inf cannot be written as JSON"},
    ]
    assert info.value.field == "config"
    with pytest.raises(errors.ValidationError, match=r"^run\.config: expected a table/object"):
        validate_config(bp, [1], field_prefix="run.config")


def test_blueprint_from_dict_round_trip_and_errors() -> None:
    bp = parse_manifest(TEXT).blueprint("mlp")
    assert Blueprint.from_dict(bp.to_dict()) == bp
    with pytest.raises(errors.ValidationError) as info:
        Blueprint.from_dict({"name": "x", "command": ["{nope}"], "gpus": -1})
    assert [e["field"] for e in info.value.errors] == ["command[0]", "gpus"]


def test_schema_file_is_resolved_next_to_the_manifest(tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "s.json").write_text(
        json.dumps({"type": "object", "properties": {"mode": {"enum": ["a", "b"]}}}))
    (tmp_path / "f.toml").write_text(
        '[[blueprints]]\nname = "t"\ncommand = ["x"]\nconfig_schema_file = "schemas/s.json"\n'
        '[[jobs]]\nname = "j"\nblueprint = "t"\nconfig = { mode = "c" }\n')
    with pytest.raises(errors.ManifestError) as info:
        load_manifest(tmp_path / "f.toml")
    assert info.value.errors[0]["text"] == (
        f"{tmp_path / 'f.toml'}:8: jobs[0].config.mode: 'c' is not one of ['a', 'b']")
    with pytest.raises(errors.ManifestError, match="cannot read the manifest"):
        load_manifest(tmp_path / "absent.toml")


def test_config_overrides() -> None:
    assert parse_config_overrides(["lr=0.1", "hidden=64", "name=abc", "flags=[1,2]",
                                   "opt.beta=0.9", "opt.name=adam", "x=NaN", "q=\"7\"",
                                   "on=true", "eq=a=b", "lr=0.2"]) == {
        "lr": 0.2, "hidden": 64, "name": "abc", "flags": [1, 2],
        "opt": {"beta": 0.9, "name": "adam"}, "x": "NaN", "q": "7", "on": True, "eq": "a=b",
    }
    for bad, message in [(["lr"], "expected KEY=VALUE"), (["=1"], "expected KEY=VALUE"),
                         (["a..b=1"], "empty part"), (["a=1", "a.b=2"], "already set"),
                         (["a.b=1", "a=2"], "already an object")]:
        with pytest.raises(errors.ValidationError, match=message):
            parse_config_overrides(bad)


def test_line_index_handles_inline_tables_arrays_and_headers() -> None:
    text = """\
top = 1
[[jobs]]
name = "a"
config = { lr = 0.1, opt = { beta = [0.9,
  0.99] } }
s = '''
multi { = ] '''
after = "x # not a comment"
[jobs.extra]
"quoted.key" = 2
[[jobs]]
list = [
  { a = 1 },  # comment ]
  { a = 2 },
]
"""
    idx = LineIndex(text)
    cases = {"top": 1, "jobs[0]": 2, "jobs[0].config.lr": 4, "jobs[0].config.opt.beta[1]": 5,
             "jobs[0].after": 8, "jobs[0].extra": 9, 'jobs[0].extra."quoted.key"': 10,
             "jobs[1]": 11, "jobs[1].list[1].a": 14, "jobs[1].list[1].missing": 14,
             "jobs[0].config.nope": 4, "jobs[7]": 2, "absent": None}
    assert {k: idx.line_of(parse_path(k)) for k in cases} == cases
    assert format_path(("jobs", 0, "extra", "quoted.key")) == 'jobs[0].extra."quoted.key"'


def test_plan_reload() -> None:
    m = parse_manifest(TEXT)
    small, hello = m.jobs
    gpu, pi = m.hosts
    plan = plan_reload(m, {small.key, "gone"},
                       {"gpu-box": gpu, "pi": models.HostPolicy("pi"), "old": pi})
    assert plan.new_jobs == [hello] and plan.unchanged_jobs == [small]
    assert plan.removed_keys == ["gone"] and plan.removed_hosts == ["old"]
    assert plan.changed_hosts == [pi] and plan.new_hosts == []
    assert plan.to_dict()["new"] == [{"name": "hello", "job_key": hello.key,
                                           "blueprint": None}]
    again = plan_reload(m, {j.key for j in m.jobs}, {h.host_id: h for h in m.hosts})
    assert again.is_noop and again.unchanged_jobs == m.jobs and not again.removed_keys


def test_a_slurm_job_becomes_a_slurm_run_request() -> None:
    from runyard.manifest import parse_manifest

    text = """\
[[jobs]]
name = "big"
command = ["python", "train.py"]
executor = "slurm"
launcher = "torchrun"
nodes = 2
gpus_per_node = 4
slurm = { partition = "gpu", time_limit = "02:00:00", sbatch_args = ["--exclusive"] }

[[jobs]]
name = "small"
command = ["python", "train.py", "small"]
"""
    big, small = parse_manifest(text, source="m.toml").jobs
    req = big.to_run_request()
    assert (req["executor"], req["launcher"]) == ("slurm", "torchrun")
    assert req["slurm"] == {"partition": "gpu", "time_limit": 120,
                            "sbatch_args": ["--exclusive"]}
    assert req["constraints"]["nodes"] == 2 and req["constraints"]["gpus"] == 4
    assert "executor" not in small.to_run_request()
    # Where a job runs is not what it computes: its stable id does not change with it.
    moved = parse_manifest(text.replace('executor = "slurm"\nlauncher = "torchrun"\n', "")
                           .replace('slurm = { partition = "gpu", time_limit = "02:00:00", '
                                    'sbatch_args = ["--exclusive"] }\n', ""),
                           source="m.toml").jobs[0]
    assert moved.key == big.key
