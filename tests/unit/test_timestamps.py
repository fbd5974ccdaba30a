"""The one parser of API and protocol times (server bodies, the agent's forwarding)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from runyard import errors
from runyard.timestamps import (
    EpochCache,
    epoch_ms,
    format_ms,
    format_time,
    is_time,
    parse_iso,
    parse_time,
)


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


@pytest.mark.parametrize(("when", "text"), [
    (0, "1970-01-01T00:00:00.000Z"),
    (1.5, "1970-01-01T00:00:01.500Z"),
    (1700000000.5, "2023-11-14T22:13:20.500Z"),
    (1700000000.9999, "2023-11-14T22:13:20.999Z"),  # truncated, never rounded up
    (datetime(2026, 1, 1, tzinfo=UTC), "2026-01-01T00:00:00.000Z"),
    (datetime(2026, 1, 1, 1, tzinfo=timezone(timedelta(hours=1))), "2026-01-01T00:00:00.000Z"),
    (datetime(2026, 1, 1, 0, 0, 0, 123999), "2026-01-01T00:00:00.123Z"),  # naive: UTC
])
def test_the_one_time_format(when: float | datetime, text: str) -> None:
    assert format_time(when) == text


def test_format_time_defaults_to_now() -> None:
    before = time.time()
    assert before - 0.001 <= parse_time(format_time(), "at") <= time.time()  # type: ignore[operator]


def test_milliseconds_survive_a_round_trip() -> None:
    # Some of these floats sit just below their millisecond: truncating t * 1000 loses one.
    for ms in range(1767225600000, 1767225600000 + 5000, 7):
        text = format_ms(ms)
        assert format_time(parse_time(text, "at")) == text  # type: ignore[arg-type]
        assert epoch_ms(parse_iso(text).timestamp()) == ms


def test_parse_iso_is_aware_and_refuses_junk() -> None:
    assert parse_iso("2026-01-01T00:00:00").tzinfo is not None
    assert parse_iso("2026-01-01T00:00:00Z") == datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_iso("soon")


def test_epoch_cache_reads_each_distinct_time_once() -> None:
    cache = EpochCache()
    assert cache.epoch("2026-01-01T00:00:00Z") == 1767225600.0
    assert cache.epoch("2026-01-01T00:00:00Z") == 1767225600.0
    assert cache.epoch(None) is None
    assert cache.epoch("junk") is None
