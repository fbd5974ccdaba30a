"""What the store's SQL must not do, on both databases: let bound parameters reach an
error's message (or a log), and ignore the escapes of a ``name_like`` pattern."""

from __future__ import annotations

import time

import pytest

from runyard import errors
from runyard.queue import Queue
from runyard.store.base import RunFilter

from ..support.factories import submit

SECRET = "s3cret-parameter-value"


def names(queue: Queue, pattern: str) -> list[str]:
    return sorted(r["name"] for r in queue.store.list_runs(RunFilter(name_likes=(pattern,))))


def test_name_like_escapes_match_underscore_and_percent_themselves(queue: Queue) -> None:
    for name in ("a_b", "axb", "AyB", "a-long-b"):  # run names cannot hold a `%`
        submit(queue, name)
    assert names(queue, "a_b") == ["AyB", "a_b", "axb"]  # `_` is any one character
    assert names(queue, "a\\_b") == ["a_b"]
    assert names(queue, "A\\_B") == ["a_b"]  # still case-insensitive
    assert names(queue, "a%b") == ["AyB", "a-long-b", "a_b", "axb"]
    assert names(queue, "a\\%b") == []
    assert names(queue, "a\\%") == []


def test_a_database_error_carries_no_parameter_values(queue: Queue) -> None:
    # An event of a run that does not exist: the foreign key refuses it, on both databases.
    with pytest.raises(errors.RunyardError) as caught:
        with queue.store.transaction() as tx:
            tx.insert_event({"run_id": "no-such-run", "seq": 1, "attempt": 0,
                             "at": time.time(), "kind": "status", "status": "queued",
                             "actor": SECRET, "details": {"token": SECRET}})
    seen = [caught.value, *_causes(caught.value)]
    assert len(seen) > 1  # the driver's error is kept as the cause
    for exc in seen:
        assert SECRET not in str(exc)
    assert "parameters hidden" in str(caught.value.__cause__)


def _causes(exc: BaseException) -> list[BaseException]:
    out = []
    while exc.__cause__ is not None:
        exc = exc.__cause__
        out.append(exc)
    return out
