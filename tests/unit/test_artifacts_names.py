"""Artifact name validation: one table of accepted and refused names."""

from __future__ import annotations

import pytest

from runyard import errors
from runyard.artifacts import validate_artifact_name

GOOD = [
    "model.pt",
    "checkpoints/step-100.pt",
    "a",
    "deep/er/tree/file.bin",
    "with space.txt",
    "ünïcode/模型.pt",
    ".hidden",
    "x..y",
    "n" * 255,
]

BAD = [
    ("", "empty"),
    ("/etc/passwd", "relative"),
    ("../model.pt", "'..'"),
    ("checkpoints/../../x", "'..'"),
    ("..", "'..'"),
    ("a/./b", "'.'"),
    ("a//b", "empty"),
    ("dir/", "empty"),
    ("c:\\windows\\x", "'\\'"),
    ("sub\\model.pt", "'\\'"),
    ("nul\x00byte", "control"),
    ("line\nbreak", "control"),
    ("tab\there", "control"),
    ("del\x7f", "control"),
    ("c1\x85", "control"),
    ("n" * 256, "256 characters"),
]


@pytest.mark.parametrize("name", GOOD)
def test_good_names(name: str) -> None:
    assert validate_artifact_name(name) == name


@pytest.mark.parametrize(("name", "why"), BAD)
def test_bad_names(name: str, why: str) -> None:
    with pytest.raises(errors.ValidationError) as caught:
        validate_artifact_name(name)
    assert caught.value.field == "name"
    assert caught.value.message.startswith("name: ")
    assert why in caught.value.message
    assert caught.value.errors == [{"field": "name", "message": caught.value.message}]


@pytest.mark.parametrize("value", [None, 3, b"model.pt", ["model.pt"]])
def test_non_strings(value: object) -> None:
    with pytest.raises(errors.ValidationError) as caught:
        validate_artifact_name(value)
    assert caught.value.field == "name"
