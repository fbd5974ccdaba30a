"""The one parser of API and protocol times (server bodies, the agent's forwarding)."""

from __future__ import annotations

import pytest

from runyard import errors
from runyard.timestamps import is_time, parse_time


@pytest.mark.parametrize(("text", "seconds"), [
    ("2026-01-01T00:00:00Z", 1767225600.0),
    ("2026-01-01T00:00:00.250z", 1767225600.25),
    ("2026-01-01T01:00:00+01:00", 1767225600.0),
    ("2026-01-01T00:00:00", 1767225600.0),  # no zone: UTC
    ("1767225600.5", 1767225600.5),
    (1767225600, 1767225600.0),
])
def test_times_it_takes(text: str | int, seconds: float) -> None:
    assert parse_time(text, "at") == seconds


@pytest.mark.parametrize("bad", ["yesterday", "2026-13-01T00:00:00Z", "nan", "inf",
                                 "-Infinity", float("nan"), True, [1]])
def test_times_it_refuses_name_the_field(bad: object) -> None:
    with pytest.raises(errors.ValidationError) as caught:
        parse_time(bad, "rows[3][1]")  # type: ignore[arg-type]
    assert caught.value.field == "rows[3][1]"
    if isinstance(bad, str):
        assert not is_time(bad)


def test_nothing_is_no_time() -> None:
    assert parse_time(None, "at") is None and parse_time("", "at") is None
    assert is_time("")  # the server takes it as "now"
