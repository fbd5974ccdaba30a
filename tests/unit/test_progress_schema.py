"""The v1 snapshot schema, the validator and the atomic writer."""

from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from runyard import defaults, errors
from runyard.progress import snapshot

EXAMPLE: dict[str, Any] = {
    "schema": "runyard.progress/v1", "seq": 57, "updated_at": "2026-11-22T15:00:00.123Z",
    "phase": "train", "step": 1200, "total_steps": 5000, "epoch": 2.4, "total_epochs": 10,
    "percent": 24.0, "rate": {"value": 3.9, "units": "steps/s"},
    "operations": [{"operation": "train", "value": 1200, "final_value": 5000,
                    "units": "steps"}],
    "metrics": {"loss": 0.31, "accuracy": 0.88}, "eta_seconds": 340.5, "message": "epoch 3",
}


def test_schema_ships_in_package_and_is_draft_2020_12() -> None:
    text = resources.files("runyard.progress").joinpath("progress-v1.schema.json").read_text()
    schema = json.loads(text)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    assert snapshot.load_schema() == schema
    assert schema["required"] == ["schema", "updated_at"]


def test_product_example_and_minimal_snapshot_are_valid() -> None:
    assert snapshot.validate_snapshot(EXAMPLE) == []
    assert snapshot.validate_snapshot(
        {"schema": "runyard.progress/v1", "updated_at": "2026-01-01T00:00:00Z"}) == []


def test_unknown_keys_are_allowed() -> None:
    snap = {**EXAMPLE, "gpu_util": {"0": 93.5}, "x-custom": [1, 2, 3]}
    assert snapshot.validate_snapshot(snap) == []


def test_custom_phase_is_allowed() -> None:
    assert snapshot.validate_snapshot({**EXAMPLE, "phase": "distill"}) == []


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_spelled_as_strings_are_valid(value: str) -> None:
    assert snapshot.validate_snapshot({**EXAMPLE, "metrics": {"loss": value}}) == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"schema": "runyard.progress/v2"}, "schema"),
        ({"updated_at": "yesterday"}, "updated_at"),
        ({"step": -1}, "step"),
        ({"step": 1.5}, "step"),
        ({"seq": "7"}, "seq"),
        ({"percent": 120}, "percent"),
        ({"metrics": {"loss": "low"}}, "metrics.loss"),
        ({"metrics": {"loss": "nan"}}, "metrics.loss"),
        ({"rate": {"units": "steps/s"}}, "rate"),
        ({"operations": [{"value": 3}]}, "operations.0"),
        ({"eta_seconds": -5}, "eta_seconds"),
    ],
)
def test_invalid_fields_are_named(change: dict[str, Any], field: str) -> None:
    problems = snapshot.validate_snapshot({**EXAMPLE, **change})
    assert problems, change
    assert any(p.startswith(field) for p in problems), problems


@pytest.mark.parametrize("missing", ["schema", "updated_at"])
def test_required_keys(missing: str) -> None:
    snap = dict(EXAMPLE)
    del snap[missing]
    problems = snapshot.validate_snapshot(snap)
    assert any(missing in p for p in problems), problems


def test_not_an_object() -> None:
    assert snapshot.validate_snapshot([1, 2]) == ["snapshot: expected a JSON object, got list"]


def test_metric_bounds() -> None:
    many = {f"m{i}": 1.0 for i in range(defaults.SNAPSHOT_MAX_METRICS + 1)}
    assert snapshot.validate_snapshot({**EXAMPLE, "metrics": many})
    assert snapshot.validate_snapshot(
        {**EXAMPLE, "metrics": {"x" * (defaults.METRIC_NAME_MAX + 1): 1.0}})
    ok = {f"m{i}": 1.0 for i in range(defaults.SNAPSHOT_MAX_METRICS)}
    assert snapshot.validate_snapshot({**EXAMPLE, "metrics": ok}) == []


def test_oversized_snapshot_is_refused() -> None:
    big = {**EXAMPLE, "notes": "x" * defaults.SNAPSHOT_MAX_BYTES}
    assert any("bytes exceeds" in p for p in snapshot.validate_snapshot(big))
    with pytest.raises(errors.ValidationError, match="bytes exceeds"):
        snapshot.encode_snapshot(big)


def test_encode_spells_non_finite_floats_as_strings() -> None:
    data = snapshot.encode_snapshot(
        {**EXAMPLE, "metrics": {"a": math.nan, "b": math.inf, "c": -math.inf, "d": 1e300},
         "nested": [{"x": math.nan}]})
    obj = json.loads(data)  # strict JSON: no bare NaN tokens
    assert obj["metrics"] == {"a": "NaN", "b": "Infinity", "c": "-Infinity", "d": 1e300}
    assert obj["nested"] == [{"x": "NaN"}]
    assert b"NaN," not in data.replace(b'"NaN"', b"")
    assert snapshot.validate_snapshot(obj) == []


def test_encode_refuses_too_many_metrics() -> None:
    many = {f"m{i}": 1.0 for i in range(defaults.SNAPSHOT_MAX_METRICS + 1)}
    with pytest.raises(errors.ValidationError, match="metrics"):
        snapshot.encode_snapshot({**EXAMPLE, "metrics": many})


def test_write_snapshot_replaces_atomically_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "progress.json"
    for seq in range(1, 4):
        snapshot.write_snapshot(target, {**EXAMPLE, "seq": seq}, fsync=seq == 2)
    assert json.loads(target.read_text())["seq"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["progress.json"]


def test_write_snapshot_failure_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "progress.json"
    snapshot.write_snapshot(target, EXAMPLE)
    with pytest.raises(errors.ValidationError):
        snapshot.write_snapshot(target, {**EXAMPLE, "notes": "x" * 70_000})
    assert json.loads(target.read_text())["seq"] == 57
    assert [p.name for p in tmp_path.iterdir()] == ["progress.json"]
