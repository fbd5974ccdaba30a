"""The project of a run started by hand: argument, RUNYARD_PROJECT, runyard.toml, directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runyard.sdk import projects


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home directory of the test's own; the search never climbs above it."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def said() -> tuple[list[str], projects.Warn]:
    messages: list[str] = []
    return messages, lambda key, text: messages.append(text)


def test_the_order_argument_env_file_directory(home: Path) -> None:
    repo = home / "vision-exp"
    (repo / ".git").mkdir(parents=True)
    sub = repo / "train" / "resnet"
    sub.mkdir(parents=True)
    env = {"RUNYARD_PROJECT": "from-env"}
    assert projects.resolve("given", env, cwd=sub) == "given"
    assert projects.resolve(None, env, cwd=sub) == "from-env"
    assert projects.resolve(None, {}, cwd=sub) == "resnet"  # no file: the directory's name
    (repo / "runyard.toml").write_text('project = "vision"\n')  # at the checkout's root
    assert projects.resolve(None, {}, cwd=sub) == "vision"
    assert projects.resolve(None, {"RUNYARD_PROJECT": ""}, cwd=sub) == "vision"
    (sub / "runyard.toml").write_text('[other]\nkey = 1\n')  # the nearest file names none
    assert projects.resolve(None, {}, cwd=sub) == "resnet"
    (sub / "runyard.toml").write_text('project = "resnets"\n')  # the nearest one wins
    assert projects.resolve(None, {}, cwd=sub) == "resnets"


def test_the_search_stops_at_the_git_root_and_at_home(home: Path, tmp_path: Path) -> None:
    (home / "runyard.toml").write_text('project = "home-wide"\n')
    inside = home / "a" / "b"
    inside.mkdir(parents=True)
    assert projects.resolve(None, {}, cwd=inside) == "home-wide"  # home itself is looked at
    repo = home / "a"
    (repo / ".git").write_text("gitdir: elsewhere\n")  # a worktree's .git is a file
    assert projects.resolve(None, {}, cwd=inside) == "b"  # not above the checkout
    outside = tmp_path / "above-home"
    (outside / "deep").mkdir(parents=True)
    (tmp_path / "runyard.toml").write_text('project = "not-ours"\n')
    assert projects.find_config(outside / "deep") == tmp_path / "runyard.toml"


def test_bad_files_are_warned_about_and_passed_over(home: Path) -> None:
    work = home / "my exp (2)"
    work.mkdir()
    messages, warn = said()
    (work / "runyard.toml").write_text("project = \n")
    assert projects.resolve(None, {}, cwd=work, warn=warn) == "my-exp-2"
    assert "is unreadable" in messages[-1]
    (work / "runyard.toml").write_text('project = "bad name!"\n')
    assert projects.resolve(None, {}, cwd=work, warn=warn) == "my-exp-2"
    assert "'bad name!' is not a valid name" in messages[-1]
    (work / "runyard.toml").write_text("project = 3\n")
    assert projects.resolve(None, {}, cwd=work, warn=warn) == "my-exp-2"
    assert len(messages) == 3


def test_directory_names_become_valid_project_names(tmp_path: Path) -> None:
    assert projects.directory_name(tmp_path / "v1.") == "v1"
    assert projects.directory_name(tmp_path / "..hidden") == "hidden"
    assert projects.directory_name(tmp_path / "Ångström") == "ngstr-m"
    assert projects.directory_name(tmp_path / "(((") == projects.FALLBACK
    assert projects.directory_name(Path("/")) == projects.FALLBACK
    assert len(projects.directory_name(tmp_path / ("x" * 250))) == 200


def test_a_removed_directory_never_raises(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gone = home / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()  # the script's directory was removed under it
    assert projects.resolve(None, {}) == projects.FALLBACK


def test_a_directory_closed_to_the_user_ends_the_search(home: Path) -> None:
    closed = home / "closed"
    (closed / "inner").mkdir(parents=True)
    closed.chmod(0o000)
    try:
        if os.access(closed, os.X_OK):  # the superuser looks into it anyway
            pytest.skip("this user can read any directory")
        assert projects.find_config(closed / "inner") is None
    finally:
        closed.chmod(0o755)
