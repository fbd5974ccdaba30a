"""Command placeholders are checked at submission (runyard.submission.build_run): a literal
brace is written ``{{``/``}}``, and a placeholder an agent could not fill is a 422 naming the
argument instead of a ``setup_error`` once the run is claimed."""

from __future__ import annotations

import pytest

from runyard import errors, submission
from runyard.placeholders import render_command


def _build(command: list[str], **req: object) -> dict[str, object]:
    return submission.build_run({"name": "p", "command": command, **req}, None, owner="u",
                                now=1.0)


def test_doubled_braces_are_literal_and_render_as_single_ones() -> None:
    command = ["python", "t.py", "--config", '{{"lr": 0.1}}', "--out", "{artifact_dir}/x"]
    row = _build(command)
    assert row["command"] == command  # stored as given: the agent fills it
    argv = render_command(command, artifact_dir="/a")
    assert argv == ["python", "t.py", "--config", '{"lr": 0.1}', "--out", "/a/x"]


@pytest.mark.parametrize(("command", "field", "words"), [
    (["python", "t.py", "--config", '{"lr": 0.1}'], "command[3]", "unknown placeholder"),
    (["python", "{lrfile}"], "command[1]", "unknown placeholder {lrfile}"),
    (["echo", "a}b"], "command[1]", "not a valid placeholder template"),
    (["echo", "{"], "command[1]", "not a valid placeholder template"),
    (["echo", "{run_id!r}"], "command[1]", "no conversion"),
    (["echo", "{attempt:>5}"], "command[1]", "no conversion"),
    (["python", "{seed}"], "command[1]", "sets no seed"),
])
def test_placeholders_that_cannot_be_filled_are_refused_naming_the_argument(
        command: list[str], field: str, words: str) -> None:
    with pytest.raises(errors.ValidationError) as caught:
        _build(command)
    assert caught.value.field == field
    assert words in caught.value.message
    if "seed" not in words:
        assert "{{" in caught.value.message  # the escape is offered


def test_a_seed_placeholder_with_a_seed_and_every_known_name_pass() -> None:
    _build(["python", "{seed}", "{config_file}", "{run_id}", "{attempt}", "{name}", "{python}",
            "{checkpoint_dir}", "{progress_file}", "{metrics_file}", "{stop_file}"], seed=3)
