"""Every kind of manifest problem, with its exact message (file, line, key path)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runyard import errors
from runyard.manifest import parse_manifest

BLUEPRINT_HEAD = """\
[[blueprints]]
name = "mlp"
command = ["python", "train.py", "--config", "{config_file}"]
"""
SCHEMA_LINE = (  # one line, as TOML inline tables must be
    'config_schema = { type = "object", required = ["lr"], properties = { lr = { type = "number", '
    'exclusiveMinimum = 0 }, hidden = { type = "integer", minimum = 1 } }, '
    "additionalProperties = false }\n"
)
BLUEPRINT = BLUEPRINT_HEAD + SCHEMA_LINE


def problems(text: str, base_dir: Path | None = None) -> list[str]:
    """The formatted problems of ``text`` (the manifest must be invalid)."""
    with pytest.raises(errors.ManifestError) as info:
        parse_manifest(text, source="fleet.toml", base_dir=base_dir)
    exc = info.value
    assert exc.errors, "a ManifestError always lists its problems"
    assert exc.message.startswith(exc.errors[0]["text"])
    for item in exc.errors:
        assert set(item) == {"file", "line", "field", "message", "text"}
        assert item["file"] == "fleet.toml"
    return [item["text"] for item in exc.errors]


def test_toml_syntax_error_shows_its_line() -> None:
    text = 'project = "x"\n\n[[jobs]]\nname = "a"\nseed = \n'
    assert problems(text) == ["fleet.toml:5: TOML syntax error: Invalid value (column 8)"]


def test_toml_syntax_error_at_end_of_file() -> None:
    assert problems('[[jobs]]\nname = "a') == [
        "fleet.toml:2: TOML syntax error: Unterminated string (at end of file)"
    ]


def test_unknown_keys_everywhere_with_suggestions() -> None:
    text = BLUEPRINT + """
colour = "blue"

[[hosts]]
id = "gpu-box"
slot = 2

[[jobs]]
name = "a"
blueprint = "mlp"
config = { lr = 0.1 }
min_ram = 3
"""
    assert problems(text) == [
        "fleet.toml:6: blueprints[0].colour: unknown key",  # TOML: it follows [[blueprints]]
        "fleet.toml:10: hosts[0].slot: unknown key (did you mean 'slots'?)",
        "fleet.toml:16: jobs[0].min_ram: unknown key (did you mean 'min_ram_gib'?)",
    ]


def test_wrong_types_are_each_reported() -> None:
    text = BLUEPRINT + """
[[jobs]]
name = "a"
blueprint = "mlp"
config = { lr = 0.1 }
seed = "zero"
require_cuda = "yes"
min_vram_gib = "lots"
max_attempts = 0
retry_on_exit_codes = [1, "two"]
stall_after_s = -5
"""
    assert problems(text) == [
        "fleet.toml:10: jobs[0].seed: expected an integer, got 'zero'",
        "fleet.toml:11: jobs[0].require_cuda: expected true or false, got 'yes'",
        "fleet.toml:12: jobs[0].min_vram_gib: expected a number, got 'lots'",
        "fleet.toml:13: jobs[0].max_attempts: must be at least 1, got 0",
        "fleet.toml:14: jobs[0].retry_on_exit_codes[1]: expected an integer, got 'two'",
        "fleet.toml:15: jobs[0].stall_after_s: must be greater than 0, got -5",
    ]


def test_sections_of_the_wrong_shape() -> None:
    text = 'hosts = "gpu-box"\njobs = [1]\n'
    assert problems(text) == [
        "fleet.toml:1: hosts: expected an array of tables ([[hosts]]), got 'gpu-box'",
        "fleet.toml:2: jobs[0]: expected a table, got 1",
    ]


def test_missing_blueprint_and_missing_required_keys() -> None:
    text = BLUEPRINT + """
[[jobs]]
name = "a"
blueprint = "mpl"

[[jobs]]
config = { lr = 0.1 }
"""
    assert problems(text) == [
        "fleet.toml:8: jobs[0].blueprint: no blueprint named 'mpl' (known: mlp)",
        "fleet.toml:10: jobs[1].name: required",
        "fleet.toml:10: jobs[1]: set blueprint (a [[blueprints]] name) or command (an argv list)",
    ]


def test_blueprint_and_command_together_are_refused() -> None:
    text = BLUEPRINT + '\n[[jobs]]\nname = "a"\nblueprint = "mlp"\ncommand = ["true"]\n'
    assert problems(text) == ["fleet.toml:9: jobs[0].command: set blueprint or command, not both"]


def test_duplicate_job_names() -> None:
    text = BLUEPRINT + """
[[jobs]]
name = "a"
blueprint = "mlp"
config = { lr = 0.1 }

[[jobs]]
name = "a"
blueprint = "mlp"
config = { lr = 0.2 }
"""
    assert problems(text) == [
        "fleet.toml:12: jobs[1].name: duplicate job name 'a' (first defined at line 6)"
    ]


def test_jobs_defining_the_same_work_are_refused() -> None:
    text = BLUEPRINT + """
[[jobs]]
name = "a"
blueprint = "mlp"
config = { lr = 0.1 }
priority = 1

[[jobs]]
name = "b"
blueprint = "mlp"
config = { lr = 0.1 }
priority = 9
"""
    assert problems(text) == [
        "fleet.toml:12: jobs[1]: same work as job 'a' (first defined at line 6): identical "
        "blueprint, command, config, seed and constraints"
    ]


def test_duplicate_host_ids_and_blueprint_names() -> None:
    text = BLUEPRINT + BLUEPRINT + """
[[hosts]]
id = "gpu-box"

[[hosts]]
id = "gpu-box"
slots = 0
"""
    assert problems(text) == [
        "fleet.toml:6: blueprints[1].name: duplicate blueprint name 'mlp' "
        "(first defined at line 1)",
        "fleet.toml:15: hosts[1].slots: must be at least 1, got 0",
    ]
    text = '[[hosts]]\nid = "gpu-box"\n\n[[hosts]]\nid = "gpu-box"\n'
    assert problems(text) == [
        "fleet.toml:5: hosts[1].id: duplicate host id 'gpu-box' (first defined at line 1)"
    ]


def test_bad_globs_and_host_ids() -> None:
    text = """\
[[hosts]]
id = "pi"
allow = ["gbt-*", "mlp-[ab"]
deny = [""]

[[hosts]]
id = "-bad id"

[[jobs]]
name = "a"
command = ["true"]
allowed_hosts = ["gpu-[0-9"]
"""
    assert problems(text) == [
        "fleet.toml:3: hosts[0].allow[1]: malformed glob 'mlp-[ab' (unclosed '[')",
        "fleet.toml:4: hosts[0].deny[0]: expected a non-empty glob string, got ''",
        "fleet.toml:7: hosts[1].id: expected a host id of 1-200 letters, digits and ._:- "
        "(not starting with punctuation), got '-bad id'",
        "fleet.toml:12: jobs[0].allowed_hosts[0]: malformed glob 'gpu-[0-9' (unclosed '[')",
    ]


def test_config_schema_violations_all_listed() -> None:
    text = BLUEPRINT + """
[[jobs]]
name = "a"
blueprint = "mlp"
config = { lr = -1, hidden = 0, extra = true }

[[jobs]]
name = "b"
blueprint = "mlp"
[jobs.config]
hidden = "wide"
"""
    assert problems(text) == [
        "fleet.toml:9: jobs[0].config: Additional properties are not allowed "
        "('extra' was unexpected)",
        "fleet.toml:9: jobs[0].config.hidden: 0 is less than the minimum of 1",
        "fleet.toml:9: jobs[0].config.lr: -1 is less than or equal to the minimum of 0",
        "fleet.toml:14: jobs[1].config: 'lr' is a required property",
        "fleet.toml:15: jobs[1].config.hidden: 'wide' is not of type 'integer'",
    ]


def test_config_values_that_json_cannot_carry() -> None:
    text = '[[jobs]]\nname = "a"\ncommand = ["true"]\nconfig = { lr = nan, when = 1979-05-27 }\n'
    assert problems(text) == [
        "fleet.toml:4: jobs[0].config.lr: nan cannot be written as JSON",
        "fleet.toml:4: jobs[0].config.when: date value 1979-05-27 cannot be written as JSON",
    ]


def test_invalid_json_schema_is_refused_with_its_path() -> None:
    text = """\
[[blueprints]]
name = "mlp"
command = ["python", "train.py"]
[blueprints.config_schema]
type = "object"
required = "lr"
[blueprints.config_schema.properties.lr]
type = "numbr"

[[jobs]]
name = "a"
blueprint = "mlp"
config = { lr = 1 }
"""
    # The broken blueprint is reported once; the job naming it adds nothing.
    assert problems(text) == [
        "fleet.toml:6: blueprints[0].config_schema.required: not a valid JSON Schema: "
        "'lr' is not of type 'array'",
        "fleet.toml:8: blueprints[0].config_schema.properties.lr.type: not a valid JSON Schema: "
        "'numbr' is not valid under any of the given schemas",
    ]


def test_schema_file_problems(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    (tmp_path / "list.json").write_text("[1]", encoding="utf-8")
    text = "".join(
        f'[[blueprints]]\nname = "b{i}"\ncommand = ["x"]\nconfig_schema_file = "{f}"\n\n'
        for i, f in enumerate(["missing.json", "bad.json", "list.json"])
    )
    assert problems(text, base_dir=tmp_path) == [
        "fleet.toml:4: blueprints[0].config_schema_file: cannot read 'missing.json': "
        "No such file or directory",
        "fleet.toml:9: blueprints[1].config_schema_file: 'bad.json' is not valid JSON: "
        "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        "fleet.toml:14: blueprints[2].config_schema_file: expected a JSON Schema object in "
        "the file",
    ]
    assert problems(text.split("\n\n")[0]) == [
        "fleet.toml:4: blueprints[0].config_schema_file: cannot be resolved: the manifest was "
        "given as text, not as a file"
    ]


def test_command_placeholders_that_reference_nothing() -> None:
    known = ("artifact_dir, attempt, checkpoint_dir, config_file, metrics_file, name, "
             "progress_file, python, run_id, seed, stop_file")
    text = """\
[[blueprints]]
name = "mlp"
command = ["python", "train.py", "--config", "{confg_file}", "--out={artifact_dir.name}"]

[[jobs]]
name = "a"
command = ["python", "-c", "print({x})", "{seed:03d}", "{"]

[[jobs]]
name = "b"
command = []
"""
    assert problems(text) == [
        f"fleet.toml:3: blueprints[0].command[3]: unknown placeholder {{confg_file}} "
        f"(known: {known})",
        f"fleet.toml:3: blueprints[0].command[4]: unknown placeholder {{artifact_dir.name}} "
        f"(known: {known})",
        f"fleet.toml:7: jobs[0].command[2]: unknown placeholder {{x}} (known: {known})",
        "fleet.toml:7: jobs[0].command[3]: placeholder {seed} takes no conversion or format spec",
        "fleet.toml:7: jobs[0].command[4]: bad placeholder syntax in '{': Single '{' encountered "
        "in format string (write {{ and }} for literal braces)",
        "fleet.toml:11: jobs[1].command: expected a non-empty list of strings (argv, run without "
        "a shell), got []",
    ]


def test_seed_placeholder_needs_a_seed() -> None:
    text = """\
[[blueprints]]
name = "gbt"
command = ["python", "gbt.py", "--seed", "{seed}"]

[[jobs]]
name = "a"
blueprint = "gbt"
"""
    assert problems(text) == [
        "fleet.toml:5: jobs[0].seed: required: blueprint 'gbt' command uses {seed}"
    ]


def test_all_problems_of_a_file_come_together_in_line_order() -> None:
    text = BLUEPRINT + """
[[hosts]]
id = "h"
allow = ["["]

[[jobs]]
name = "z"
blueprint = "nope"

[[jobs]]
name = "y"
blueprint = "mlp"
config = { lr = 0 }
"""
    found = problems(text)
    assert [t.split(":")[1] for t in found] == ["8", "12", "17"]
    with pytest.raises(errors.ManifestError) as info:
        parse_manifest(text, source="fleet.toml")
    assert info.value.message.endswith("(and 2 more problems)")
    assert info.value.field == "hosts[0].allow[0]"
    assert json.loads(json.dumps(info.value.errors))[2]["line"] == 17


def test_slurm_job_keys_are_checked_with_file_line_and_key() -> None:
    text = """\
[[jobs]]
name = "a"
command = ["python", "t.py"]
executor = "kubernetes"

[[jobs]]
name = "b"
command = ["python", "t.py", "b"]
launcher = "torchrun"
slurm = { partition = "gpu" }

[[jobs]]
name = "c"
command = ["python", "t.py", "c"]
executor = "slurm"
launcher = "mpirun"
slurm = { time_limit = "soon", sbatch_args = ["--uid=0"] }
nodes = 0
"""
    out = problems(text)
    assert out[0] == ('fleet.toml:4: jobs[0].executor: expected "agent" (the fleet\'s agents, '
                      'the default) or "slurm", got \'kubernetes\'')
    assert out[1:3] == [
        'fleet.toml:9: jobs[1].launcher: only a job with executor = "slurm" takes it',
        'fleet.toml:10: jobs[1].slurm: only a job with executor = "slurm" takes it']
    assert out[3].startswith("fleet.toml:16: jobs[2].launcher: expected one of srun, torchrun")
    assert any(t.startswith("fleet.toml:18: jobs[2].nodes: ") for t in out), out
    assert len(out) >= 5, out
