"""The importer of ``runyard sync`` creates runs through the queue, on both dialects: once, with
their attempts and events in sequence, and never as a run an agent could claim."""

from __future__ import annotations

import pytest

from runyard import errors
from runyard.queue import Queue
from runyard.sync import importer

from ..support.factories import caps
from .test_server_sync import record

RUN_ID = "0123456789abcdef0123456789abcdef"


def test_an_imported_run_is_created_once_with_its_history(queue: Queue) -> None:
    run, created = importer.import_run(queue, record(RUN_ID), owner="alice", origin="laptop:~")
    assert created and run["status"] == "completed" and run["executor"] == "local"
    assert run["source"] == "sync:laptop:~" and run["event_seq"] == 3
    again, created2 = importer.import_run(queue, record(RUN_ID), owner="alice", origin="x")
    assert not created2 and again == run
    events = queue.store.list_events(RUN_ID)
    assert [(e["seq"], e["kind"], e["status"]) for e in events] == [
        (1, "status", "queued"), (2, "status", "completed"), (3, "imported", "completed")]
    assert events[-1]["actor"] == "alice" and events[-1]["details"]["origin"] == "laptop:~"
    [attempt] = queue.store.list_attempts(RUN_ID)
    assert attempt["number"] == 1 and not attempt["active"]
    queue.fleet.register(caps("w1"))
    assert queue.claim("w1") is None
    with pytest.raises(errors.NotSchedulable):
        queue.restart(RUN_ID)
    assert queue.add_event(RUN_ID, "note") == 4  # the sequence goes on without a gap


def test_the_queue_records_only_ended_runs(queue: Queue) -> None:
    with pytest.raises(errors.ValidationError, match="only ended runs"):
        importer.import_run(queue, record(RUN_ID, "running"), owner="a", origin="o")
    row = {"id": RUN_ID, "status": "running", "attempt": 0, "executor": "local"}
    with pytest.raises(errors.Conflict, match="only ended runs are recorded"):
        queue.record_ended(row, [], [], actor="a", origin="o")
    assert queue.store.get_run(RUN_ID) is None
